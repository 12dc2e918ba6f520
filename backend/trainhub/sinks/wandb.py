"""Weights & Biases: `log.wandb: {project, entity, name, tags, mode}`.

One W&B run per run folder, its history indexed by the optimizer step (train/* and eval/* keys, from
trainhub.sinks.scalars), its config the resolved job plus what the start row measured, its summary the
end row. Offline mode writes run_dir/wandb/offline-run-*/ for `wandb sync` to upload later.

Resume: the W&B run id and the last step sent are kept in run_dir/wandb/trainhub.json; a resumed launch
continues that run id (resume="allow"; offline, a second offline-run folder with the same id, which
`wandb sync` merges) and skips every step up to the last one sent, so no step is sent twice. (W&B
itself drops a step lower than its last, so the earlier launch's value of a re-run step is the one kept.)
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from trainhub.job import WandbLog
from trainhub.metrics.rows import EndRow, StartRow
from trainhub.sinks import SinkError, need, scalars

STATE = "trainhub.json"


class WandbSink:
    name = "wandb"

    def __init__(self, cfg: WandbLog):
        self.cfg = cfg
        self.run = None
        self.where = ""

    def open(self, start: StartRow, run_dir: Path, resumed: bool) -> None:
        wandb = need("wandb", "wandb")
        self.folder = Path(run_dir) / "wandb"
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self._state() if resumed else {}
        self.run_id = state.get("id") or uuid.uuid4().hex[:8]
        self.floor = self.last_step = state.get("last_step", -1)  # an earlier launch sent every step up to floor
        if self.cfg.mode == "online" and not wandb.login(prompt=False, verify=False):
            raise SinkError("no W&B API key: run `wandb login` or set WANDB_API_KEY (or log.wandb.mode: offline)")
        settings = wandb.Settings(console="off", silent=True, disable_git=True, save_code=False)
        self.run = wandb.init(
            project=self.cfg.project, entity=self.cfg.entity, name=self.cfg.name or start.job.get("name"),
            tags=self.cfg.tags, mode=self.cfg.mode, id=self.run_id, resume="allow", dir=str(run_dir),
            config={"job": start.job, "run": _facts(start)}, settings=settings)
        self._save()
        offline = f"offline, upload with: wandb sync {Path(self.run.dir).parent}"
        self.where = offline if self.cfg.mode == "offline" else (self.run.url or "online")

    def write(self, row) -> None:
        values = scalars(row)
        if not values or row.step <= self.floor:
            return
        # the row's own time, not the moment the hub got to it; an eval row at a train row's step joins its row
        self.run.log({**values, "_timestamp": row.time}, step=row.step)
        if row.step > self.last_step:
            self.last_step = row.step
            self._save()

    def close(self, end: EndRow | None) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        code = 1
        if end is not None:
            run.summary.update({"status": end.status, "final_loss": end.final_loss, "wall_s": end.wall_s,
                                "tokens": end.tokens, "nonfinite_skipped": end.nonfinite_skipped})
            code = 0 if end.status == "completed" else (end.exit_code or 1)
        run.finish(exit_code=code)

    def _state(self) -> dict:
        try:
            return json.loads((self.folder / STATE).read_text())
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        tmp = self.folder / (STATE + ".tmp")
        tmp.write_text(json.dumps({"id": self.run_id, "last_step": self.last_step}) + "\n")
        os.replace(tmp, self.folder / STATE)


def _facts(start: StartRow) -> dict:
    return {"backend": start.backend, "hardware": start.hardware.model_dump(), "precision": start.precision,
            "params_total": start.params_total, "params_trainable": start.params_trainable,
            "flops_per_token": start.flops_per_token, "max_steps": start.max_steps,
            "tokens_per_step": start.tokens_per_step, "job_hash": start.job_hash}
