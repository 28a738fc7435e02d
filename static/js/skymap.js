// Sky map of the home page: galaxy counts per HEALPix cell in a Mollweide projection.
// RA grows to the left, as on the sky; hover shows the cell centre and its count.
(function () {
  const el = document.getElementById("sky-map");
  if (!el || typeof Plotly === "undefined") return;
  fetch(el.dataset.src).then((r) => r.json()).then((d) => {
    const lon = d.ra.map((ra) => -(ra > 180 ? ra - 360 : ra));
    const text = d.ra.map((ra, i) => `RA ${ra.toFixed(1)}°, Dec ${d.dec[i].toFixed(1)}°: ${d.count[i]} galaxies`);
    const trace = {
      type: "scattergeo", mode: "markers", lon: lon, lat: d.dec, text: text, hoverinfo: "text",
      marker: { size: 5, color: d.count.map((c) => Math.log10(c)), colorscale: "Viridis", showscale: true,
                colorbar: { title: "log10 N" } },
    };
    const layout = {
      margin: { l: 0, r: 0, t: 10, b: 0 }, height: 420,
      geo: { projection: { type: "mollweide" }, showland: false, showcoastlines: false, showcountries: false,
             showframe: true, bgcolor: "#0b1020", lonaxis: { showgrid: true, dtick: 30 }, lataxis: { showgrid: true, dtick: 30 } },
    };
    Plotly.newPlot(el, [trace], layout, { displaylogo: false, responsive: true });
    el.dataset.cells = String(d.count.length);
  });
})();
