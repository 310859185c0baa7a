  var load = function (factory) { var module = {exports: {}}; factory.call({}, module, module.exports); return module.exports; };
  var libs = window.__attnbookBertvizLibs;
  if (!libs) {
    // CommonJS wrappers: the libraries return themselves and touch no global (no window.$, no AMD define)
    libs = window.__attnbookBertvizLibs = {
      jquery: load(function (module, exports) { var define;
${jquery}
      }),
      d3: load(function (module, exports) { var define;
${d3}
      })
    };
  }
  main(libs.jquery, libs.d3);
