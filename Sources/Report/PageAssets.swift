/// The page's only style and script, inlined under the CSP nonce. System fonts only (nothing to load).
extension ReportPage {
    static let css: StaticString = """
    :root{--fg:#1b1f24;--muted:#5b6470;--line:#d5dae1;--bg:#fff;--panel:#f5f7fa;--s1:#3b82c4;--s2:#e0a100;--s3:#e0641b;--s4:#c0182b;--chain:#c0182b}
    *{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
    header{background:#16202c;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}.sub{margin:4px 0 8px;color:#c9d3df}
    nav a{color:#9fd0ff;margin-right:16px;text-decoration:none}main{padding:8px 24px 40px;max-width:1400px}
    h2{border-bottom:2px solid var(--line);padding-bottom:4px;margin-top:32px}h3{margin:18px 0 6px;font-size:16px}
    table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
    thead th{background:var(--panel)}table.sortable thead th{cursor:pointer}.kv th{background:var(--panel);font-weight:600;white-space:nowrap}
    td{overflow-wrap:anywhere}.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}.hash,.name{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}td.name{min-width:16em}
    .note{color:var(--muted)}.ok{color:#1c7c3a}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 28px}
    .chart{display:block;max-width:100%;height:auto;background:#fff}.timeline{width:100%}.lane{fill:var(--panel)}.lanelabel{font-size:13px;fill:var(--fg)}
    .axis{font-size:11px;fill:var(--muted)}.axisline{fill:none;stroke:#8a939e}
    .sev1{fill:var(--s1);border-color:var(--s1)}.sev2{fill:var(--s2);border-color:var(--s2)}.sev3{fill:var(--s3);border-color:var(--s3)}.sev4{fill:var(--s4);border-color:var(--s4)}
    circle.tl{stroke:#fff;stroke-width:1.5}.sw{display:inline-block;width:12px;height:12px;border-radius:6px;margin:0 4px 0 10px;vertical-align:-1px}
    span.sev1{background:var(--s1)}span.sev2{background:var(--s2)}span.sev3{background:var(--s3)}span.sev4{background:var(--s4)}
    .card{border:1px solid var(--line);border-left:6px solid;border-radius:4px;padding:4px 14px 8px;margin:12px 0;background:#fff}
    .card.sev1{border-left-color:var(--s1)}.card.sev2{border-left-color:var(--s2)}.card.sev3{border-left-color:var(--s3)}.card.sev4{border-left-color:var(--s4)}
    .card h3{margin:8px 0 2px}.meta{color:var(--muted);margin:0 0 4px}.msg{font-weight:500;overflow-wrap:anywhere}
    details summary{cursor:pointer;color:var(--muted);font-weight:600}.card table{width:100%}.card .kv th{width:22%}
    .beacon{border-top:1px solid var(--line);padding-top:4px}.pair{display:flex;flex-wrap:wrap;gap:16px}.scatter{width:560px}.histogram{width:380px}
    circle.conn{fill:var(--s1);fill-opacity:.8}circle.conn.first{fill:#fff;stroke:var(--s1);stroke-width:1.5}rect.bin{fill:var(--s1)}
    .graph{width:min(100%,900px)}.node circle{fill:#2b4a6f;stroke:#fff;stroke-width:2}.nodelabel{font-size:12px;fill:var(--fg)}
    line.edge{stroke:#6b7785;stroke-width:2}line.edge.chain{stroke:var(--chain);stroke-width:3.5}line.session{stroke:#b8c2cc;stroke-width:1;stroke-dasharray:4 3}
    .arrowhead{fill:#6b7785}.arrowhot{fill:var(--chain)}.edgelabel{font-size:11px;fill:#3b4450;paint-order:stroke;stroke:#fff;stroke-width:3px}
    span.chainsw{background:var(--chain)}span.edgesw{background:#6b7785}span.sessionsw{background:#b8c2cc}tr.chainrow td,tr.tunnel td{background:#fdecee}
    .bars td.barcell{width:120px}svg.bar{width:110px;height:8px;display:block}svg.bar rect{fill:var(--s1)}
    @media print{header{background:none;color:#000;padding:0}.sub{color:#333}nav{display:none}main{padding:0;max-width:none}
    body{font-size:11px}.card,.beacon,svg,tr{break-inside:avoid}h2{break-after:avoid}section{break-before:auto}
    details>summary{list-style:none}a{color:inherit;text-decoration:none}table.sortable thead th{cursor:auto}}
    """

    /// Sorts `table.sortable` by a clicked header (numbers by their value). Reads only the page's own
    /// cells and moves rows: no markup is ever built from text.
    static let script: StaticString = """
    (function(){document.querySelectorAll('table.sortable').forEach(function(t){var hs=t.tHead?t.tHead.rows[0].cells:[];Array.prototype.forEach.call(hs,function(th,i){th.addEventListener('click',function(){var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),dir=th.getAttribute('data-dir')==='a'?'d':'a';th.setAttribute('data-dir',dir);function key(r){var c=r.cells[i];if(!c)return '';var v=c.getAttribute('data-v');return v!==null?v:c.textContent.replace(/,/g,'');}rows.sort(function(x,y){var p=key(x),q=key(y),m=parseFloat(p),n=parseFloat(q),c=(isNaN(m)||isNaN(n))?p.localeCompare(q):m-n;return dir==='a'?c:-c;});rows.forEach(function(r){b.appendChild(r);});});});});})();
    """
}
