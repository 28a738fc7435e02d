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
                colorbar: { title: { text: "galaxies per cell (log10)", side: "right" }, thickness: 14 } },
      name: "HEALPix cells", showlegend: false,
    };
    // RA labels along the equator (every 60 deg) and Dec labels along the central meridian.
    const raTicks = [300, 240, 180, 120, 60];
    const labels = {
      type: "scattergeo", mode: "text", hoverinfo: "skip", showlegend: false, textfont: { color: "#cfd6e6", size: 11 },
      lon: raTicks.map((ra) => -(ra > 180 ? ra - 360 : ra)).concat([0, 0, 0, 0]),
      lat: raTicks.map(() => 0).concat([60, 30, -30, -60]),
      text: raTicks.map((ra) => `RA ${ra}°`).concat(["Dec +60°", "Dec +30°", "Dec −30°", "Dec −60°"]),
    };
    const layout = {
      margin: { l: 0, r: 0, t: 30, b: 0 }, height: 420,
      title: { text: "Galaxies on the sky (ICRS; RA grows leftwards)", font: { size: 13 } },
      geo: { projection: { type: "mollweide" }, showland: false, showcoastlines: false, showcountries: false,
             showframe: true, bgcolor: "#0b1020", lonaxis: { showgrid: true, dtick: 30 }, lataxis: { showgrid: true, dtick: 30 } },
    };
    Plotly.newPlot(el, [trace, labels], layout, { displaylogo: false, responsive: true });
    el.dataset.cells = String(d.count.length);
  });
})();
