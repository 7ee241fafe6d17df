// fmlab report: sortable/filterable tables, Plotly charts from JSON specs, run comparison.
// Plain JavaScript, no network: Plotly is assets/plotly.min.js, the data sit in the page.
"use strict";

function fmlabTraces(spec) {
  return spec.series.map(function (s) {
    var t = {name: String(s.name), x: s.x, y: s.y, type: spec.kind === "bar" ? "bar" : "scatter",
             mode: s.x.length < 30 ? "lines+markers" : "lines"};
    if (s.err) { t.error_y = {type: "data", array: s.err, visible: true}; }
    return t;
  });
}

function fmlabPlot(div, spec) {
  var layout = {title: {text: spec.title, font: {size: 14}}, margin: {t: 40, l: 60, r: 20, b: 60},
                xaxis: {title: {text: spec.xlabel}, type: spec.xlog ? "log" : "-"},
                yaxis: {title: {text: spec.ylabel}}, height: 360, legend: {font: {size: 10}}};
  if (spec.xlog) { layout.xaxis.dtick = Math.log10(2); }
  return Plotly.newPlot(div, fmlabTraces(spec), layout, {displaylogo: false, responsive: true});
}

function fmlabCellValue(td) {
  var v = td.getAttribute("data-sort");
  if (v === null) { v = td.textContent.trim(); }
  var n = parseFloat(v);
  return (v !== "" && !isNaN(n) && isFinite(v)) ? n : v.toLowerCase();
}

function fmlabSort(table, col, th) {
  var body = table.tBodies[0];
  var asc = th.getAttribute("data-dir") !== "asc";
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("data-dir"); });
  th.setAttribute("data-dir", asc ? "asc" : "desc");
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = fmlabCellValue(a.cells[col]), y = fmlabCellValue(b.cells[col]);
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  });
  rows.forEach(function (r) { body.appendChild(r); });
}

function fmlabTables() {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () { fmlabSort(table, i, th); });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  });
}

function fmlabCompare() {
  var runs = window.FMLAB_RUNS || {};
  var picked = Array.prototype.filter.call(document.querySelectorAll("input.pick"),
                                           function (b) { return b.checked; })
                 .map(function (b) { return b.value; });
  var out = document.getElementById("compare-out");
  out.innerHTML = "";
  if (picked.length < 2) { out.textContent = "Pick two or more runs."; return; }
  var keys = {};
  picked.forEach(function (n) { Object.keys(runs[n].config).forEach(function (k) { keys[k] = 1; }); });
  var table = document.createElement("table");
  table.id = "config-diff";
  table.className = "sortable";
  var head = "<thead><tr><th>config key</th>" + picked.map(function (n) {
    return "<th>" + fmlabEscape(n) + "</th>"; }).join("") + "</tr></thead><tbody>";
  var body = Object.keys(keys).sort().filter(function (k) {
    var vals = picked.map(function (n) { return JSON.stringify(runs[n].config[k]); });
    return vals.some(function (v) { return v !== vals[0]; });
  }).map(function (k) {
    return "<tr><td>" + fmlabEscape(k) + "</td>" + picked.map(function (n) {
      var v = runs[n].config[k];
      return "<td>" + (v === undefined ? "<i>absent</i>" : fmlabEscape(JSON.stringify(v))) + "</td>";
    }).join("") + "</tr>";
  }).join("");
  table.innerHTML = head + (body || "<tr><td colspan='99'>configs are identical</td></tr>") + "</tbody>";
  out.appendChild(table);
  var curveKeys = {};
  picked.forEach(function (n) { Object.keys(runs[n].curves).forEach(function (k) { curveKeys[k] = 1; }); });
  Object.keys(curveKeys).sort().forEach(function (k, i) {
    var div = document.createElement("div");
    div.className = "chart";
    div.id = "compare-chart-" + i;
    out.appendChild(div);
    var series = picked.filter(function (n) { return runs[n].curves[k]; }).map(function (n) {
      return {name: n, x: runs[n].curves[k].x, y: runs[n].curves[k].y}; });
    fmlabPlot(div, {title: k, xlabel: "step", ylabel: k, kind: "line", xlog: false, series: series});
  });
}

function fmlabEscape(s) {
  return String(s).replace(/[&<>"']/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c]; });
}

document.addEventListener("DOMContentLoaded", function () {
  fmlabTables();
  var charts = window.FMLAB_CHARTS || [];
  charts.forEach(function (spec) { fmlabPlot(document.getElementById(spec.id), spec); });
  var button = document.getElementById("compare-button");
  if (button) { button.addEventListener("click", fmlabCompare); }
});
