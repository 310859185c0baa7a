  var REQUIRE_SRC = ${require_src};
  var PATHS = {d3: ${d3_src}, jquery: ${jquery_src}};
  var run = function () {
    // a require.js context of our own, so a page's existing configuration (classic Jupyter) is left alone
    window.requirejs.config({context: "attnbook_bertviz", paths: PATHS})(["jquery", "d3"], main);
  };
  if (typeof window.requirejs === "function") { run(); return; }
  if (!window.__attnbookRequire) {
    window.__attnbookRequire = new Promise(function (resolve, reject) {
      var add = function () {
        var s = document.createElement("script");
        s.src = REQUIRE_SRC;
        s.onload = resolve;
        s.onerror = function () { reject(new Error("BertViz view: could not load " + REQUIRE_SRC)); };
        document.head.appendChild(s);
      };
      // after the page's own scripts, so that none of them meets require.js's global define()
      if (document.readyState === "complete") add(); else window.addEventListener("load", add);
    });
  }
  window.__attnbookRequire.then(run);
