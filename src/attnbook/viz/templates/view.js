(function () {
  var decode = function (p) {  // weights arrive as integers (rounded to ${decimals} decimals)
    var scale = ${scale};
    p.attention.forEach(function (d) {
      d.attn = d.attn.map(function (l) { return l.map(function (h) { return h.map(function (r) {
        return r.map(function (v) { return v / scale; }); }); }); });
    });
    return p;
  };
  var main = ${main};

${loader}
})();
