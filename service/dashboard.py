"""The web dashboard (HTML), served by the service itself."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lrsearch</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}
td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}</style></head>
<body><h1>lrsearch</h1><table id="jobs"><thead><tr><th>id</th><th>name</th><th>status</th>
<th>trials</th><th>best lr</th><th>best val_loss</th></tr></thead><tbody></tbody></table>
<script>
async function load(){
  const r = await fetch('/api/v1/jobs?limit=100'); const data = await r.json();
  const body = document.querySelector('#jobs tbody'); body.replaceChildren();
  for (const j of data.items){
    const tr = document.createElement('tr');
    const c = j.trial_counts; const done = c.completed + c.pruned + c.diverged + c.failed + c.cancelled;
    for (const v of [j.id, j.name, j.status, done + '/' + (j.total_trials ?? '?'),
                     j.best ? j.best.lr.toPrecision(3) : '', j.best ? j.best.val_loss.toFixed(4) : '']){
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}
load(); setInterval(load, 2000);
</script></body></html>"""


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse(_INDEX)
