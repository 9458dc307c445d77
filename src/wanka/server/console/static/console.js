// Draws each <div data-chart="NAME"> from the JSON in <script type="application/json"
// id="chart-NAME"> (data, never code: the page's policy runs no inline script). Tooltips are
// drawn on the canvas (richText): ECharts' HTML tooltips carry inline styles the policy refuses.
(function () {
  "use strict";
  function data(name) {
    var el = document.getElementById("chart-" + name);
    return el ? JSON.parse(el.textContent) : null;
  }
  function time(t) { return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}); }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"}); }
  var build = {
    usage: function (d) {
      var series = Object.keys(d.series).map(function (model) {
        return {name: model, type: "bar", stack: "cards", data: d.series[model]};
      });
      if (d.currency) {
        series.push({name: "cost (" + d.currency + ")", type: "line", yAxisIndex: 1, data: d.cost});
      }
      return {
        tooltip: {trigger: "axis", renderMode: "richText"}, legend: {},
        xAxis: {type: "category", data: d.days},
        yAxis: [{type: "value", name: "card-hours"}, {type: "value", name: d.currency || ""}],
        series: series
      };
    },
    allocation: function (d) {
      return {
        tooltip: {trigger: "axis", renderMode: "richText"},
        xAxis: {type: "category", data: d.times.map(time)},
        yAxis: {type: "value", max: 1, axisLabel: {formatter: function (v) { return Math.round(v * 100) + "%"; }}},
        legend: {},
        series: [
          {name: "cards held (utilisation)", type: "line", areaStyle: {}, data: d.allocated},
          {name: "goodput of held card time", type: "line", connectNulls: false, data: d.goodput}
        ]
      };
    },
    cycles: function (d) {
      return {
        tooltip: {trigger: "axis", renderMode: "richText"},
        xAxis: {type: "category", data: d.times.map(clock)},
        yAxis: {type: "value", name: "ms"},
        series: [{name: "cycle", type: "line", data: d.ms}]
      };
    }
  };
  function draw() {
    if (!window.echarts) { return; }
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var name = el.getAttribute("data-chart"), d = data(name);
      if (!d || !build[name]) { return; }
      var chart = echarts.init(el, null, {renderer: "canvas"});
      chart.setOption(build[name](d));
      el.setAttribute("data-drawn", "true");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
