"""One large job as the jobs page shows it: a synthetic batch of N items on a real cluster.

Starts its own database (GALCAT_DB_NAME, default galcat_jobs_demo), a qcluster and a web server,
queues `jobs demo N`, opens /jobs/ in headless Chromium and, without reloading, takes
screenshots and reads the page's progress bars while the job runs. Prints the progress seen
on the page over time and the throughput; writes PNGs and a JSON log to --out.

    .venv/bin/python bench/jobs_demo.py --items 10000 --batch-size 100 --delay 0.004
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--delay", type=float, default=0.004, help="seconds of work per item")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--db", default="galcat_jobs_demo")
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "jobs_demo")
    ap.add_argument("--shots", type=int, default=4, help="screenshots while running")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GALCAT_DB_NAME": args.db, "GALCAT_Q_WORKERS": str(args.workers), "DJANGO_SETTINGS_MODULE": "config.settings"}
    sys.path.insert(0, str(ROOT))
    os.environ.update(env)

    def manage(*a: str) -> None:
        subprocess.run([PY, "manage.py", *a], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)

    manage("migrate", "--noinput", "-v", "0")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from core.roles import CURATOR, grant
    from jobs.models import Job

    user, _ = get_user_model().objects.get_or_create(username="demo-curator")
    grant(user, CURATOR)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()

    logs = {name: open(args.out / f"{name}.log", "wb") for name in ("qcluster", "web")}
    web = subprocess.Popen(
        [PY, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=logs["web"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster = None
    try:
        from playwright.sync_api import sync_playwright

        from tests.utils import CHROMIUM, LAUNCH_ARGS

        base = f"http://127.0.0.1:{args.port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            ctx = browser.new_context(viewport={"width": 1400, "height": 520})
            ctx.add_cookies([{"name": "sessionid", "value": session.session_key, "url": base}])
            page = ctx.new_page()
            for _ in range(120):  # wait for the web server
                try:
                    page.goto(f"{base}/jobs/", timeout=60_000)
                    break
                except Exception:
                    time.sleep(0.5)
            # Queue the job first (the cluster is not up yet), then open the page once.
            out = subprocess.run(
                [PY, "manage.py", "jobs", "demo", str(args.items), "--batch-size", str(args.batch_size), "--delay", str(args.delay)],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            job_id = int(out.split("queued job ")[1].split(":")[0])
            page.goto(f"{base}/jobs/?kind=demo")
            page.evaluate("window.__notReloaded = true")
            row = f'tr[data-job="{job_id}"]'
            cluster = subprocess.Popen(
                [PY, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=logs["qcluster"], stderr=subprocess.STDOUT, start_new_session=True
            )
            t0 = time.monotonic()
            seen, shots, next_shot = [], [], 0.0
            expected = args.items * args.delay / args.workers + 10
            while time.monotonic() - t0 < 20 * expected:
                text = page.inner_text(f"{row} .count")
                width = page.eval_on_selector(f"{row} .bar span", "e => e.style.width")
                status = page.inner_text(f"{row} .status")
                t = time.monotonic() - t0
                seen.append({"t": round(t, 2), "status": status, "count": text, "bar_width": width})
                if status not in ("queued", "running") or (t >= next_shot and len(shots) < args.shots and status == "running"):
                    path = args.out / f"jobs_page_{len(shots)}_{status}.png"
                    page.screenshot(path=str(path), full_page=False)
                    shots.append({"t": round(t, 2), "path": str(path), "count": text, "status": status})
                    next_shot = t + expected / max(args.shots, 1)
                if status not in ("queued", "running"):
                    break
                time.sleep(0.5)
            not_reloaded = page.evaluate("window.__notReloaded === true")
            browser.close()
        job = Job.objects.get(pk=job_id)
        took = (job.finished - job.started).total_seconds() if job.finished and job.started else None
        report = {
            "job": job_id,
            "status": job.status,
            "done": job.done,
            "total": job.total,
            "batches": job.result["batches"]["n"],
            "seconds_started_to_finished": took,
            "items_per_s": round(job.done / took, 1) if took else None,
            "page_never_reloaded": not_reloaded,
            "screenshots": shots,
            "progress_seen_on_page": seen,
        }
        (args.out / "progress.json").write_text(json.dumps(report, indent=1))
        print(
            f"job {job_id}: {job.status} {job.done}/{job.total} in {report['batches']} batches, "
            f"{took:.1f} s from first batch to last ({report['items_per_s']} items/s, {args.workers} workers, {args.delay * 1000:.1f} ms/item of work)"
        )
        print(f"page polled without reload: {not_reloaded}; distinct progress values seen on the page: {len({s['count'] for s in seen})}")
        for s in seen[:: max(1, len(seen) // 12)] + seen[-1:]:
            print(f"  t={s['t']:6.2f} s  {s['status']:<10} {s['count']:<24} bar {s['bar_width']}")
        for s in shots:
            print(f"  screenshot {s['path']} at t={s['t']} s: {s['count']}")
        return 0 if job.status == Job.Status.SUCCEEDED else 1
    finally:
        for proc in (cluster, web):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the main process only (see NOTES.md)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            if proc:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


if __name__ == "__main__":
    sys.exit(main())
