"""The GPU stage: a callable class that keeps one model resident and runs the job's task per batch.

Ray Data runs it in an actor pool (``map_batches(TaskActor, compute=ActorPoolStrategy(size=N))``);
a test can call it directly on a dict batch without Ray. What a call does is the task's ``run``
(:data:`pipeline.tasks.TASKS`).
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import time

import numpy as np

from fcs.config import SamplerConfig
from fcs.tasks import Items
from pipeline.schema import SAMPLER_METRICS
from pipeline.tasks import TASKS

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("id", "error", "out", "height", "width", "seed", *SAMPLER_METRICS.names, "started_at",
                  "finished_at")


class TaskActor:
    """Loads the model (and whatever the task loads, e.g. CLIP for style) once in ``__init__``;
    ``__call__`` runs the task on the batch's valid rows.

    Args:
        model: hub id, s3:// or gs:// URI of a diffusers folder, local folder, or a built-in name; staged
            once per node by :func:`pipeline.model_cache.stage_model`. endpoint: S3 endpoint for the URI.
        task: a name in :data:`pipeline.tasks.TASKS`. config: the job's validated ``fcs.SamplerConfig``.
        options: the task's checked options (``Task.check_options``); None = the task's defaults.
        device, dtype: for :func:`fcs.load_denoiser` ('auto' = CUDA fp16 when torch sees a GPU).
        threads: torch CPU threads (Ray starts workers with OMP_NUM_THREADS=1); None leaves it.
        compile_unet, channels_last: :meth:`fcs.UNetDenoiser.accelerate` switches.
        pad_to: run a short batch padded to this many items (copies of its last item, results
            dropped) so GPU kernels and compiled graphs see one shape; None = as it comes.
    """

    def __init__(self, model: str, task: str = "restore", config: SamplerConfig = SamplerConfig(),  # noqa: B008
                 options: dict | None = None, device: str = "auto", dtype: str = "auto", threads: int | None = None,
                 endpoint: str | None = None, compile_unet: bool = False, channels_last: bool = False,
                 pad_to: int | None = None) -> None:
        import fcs
        from pipeline.model_cache import stage_model

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.task, self.config = TASKS[task], config
        self.options = self.task.check_options({}) if options is None else options
        self.columns = OUTPUT_COLUMNS + self.task.extra_images
        self.worker, self.node, ray_gpus = _whoami()
        if ray_gpus and device == "auto" and not _cuda_available():
            log.warning("Ray assigned GPU(s) %s to this actor but torch sees no CUDA device; running on CPU",
                        ray_gpus)
        self.denoiser = fcs.load_denoiser(stage_model(model, endpoint), device=device, dtype=dtype)
        self.min_side = self.denoiser.min_side()  # from the configs: no forward pass
        self.denoiser.accelerate(compile=compile_unet, channels_last=channels_last)
        self.pad_to = pad_to if self.task.batched else None
        self.device = str(self.denoiser.device)
        self.keywords = self.task.keywords(self.denoiser, self.options)

    def __call__(self, batch: dict) -> dict:
        """Batch columns (numpy arrays): id, error, rgb (uint8 H*W*3 bytes), mask (float32 H*W bytes or
        None), height, width, prompt, seed. Returns id, error, out (uint8 bytes of the output image, or
        None), height and width of the output, seed and the per-item metrics, and the bytes of the
        task's extra output images (layers: foreground, background, alpha); rows arriving with an error
        pass through."""
        n = len(batch["id"])
        rows = [{"id": str(batch["id"][i]), "error": batch["error"][i], "out": None,
                 "height": int(batch["height"][i]), "width": int(batch["width"][i]), "seed": int(batch["seed"][i])}
                for i in range(n)]
        for row in rows:
            if row["error"] is None:
                row["error"] = self._too_small(row["height"], row["width"])
        todo = [i for i in range(n) if rows[i]["error"] is None]
        if todo:
            self._sample(batch, rows, todo)
        return {name: np.array([row.get(name) for row in rows], dtype=object) for name in self.columns}

    def _too_small(self, h: int, w: int) -> str | None:
        """The validate: error of an item whose output would be smaller than the model takes."""
        out_h, out_w = self.task.output_size(h, w, self.options)
        if min(out_h, out_w) >= self.min_side:
            return None
        what = f"image is {w}x{h}" + (f" (output {out_w}x{out_h})" if (out_h, out_w) != (h, w) else "")
        return f"validate: {what}, smaller than this model's minimum of {self.min_side} pixels per side; upscale it"

    def _sample(self, batch: dict, rows: list[dict], todo: list[int]) -> None:
        started = time.time()
        self._reset_peak()
        images, masks = [], []
        for i in todo:
            h, w = rows[i]["height"], rows[i]["width"]
            images.append(np.frombuffer(batch["rgb"][i], np.uint8).reshape(h, w, 3))
            mask = batch["mask"][i]
            masks.append(None if mask is None else np.frombuffer(mask, np.float32).reshape(h, w))
        prompts = [str(batch["prompt"][i]) for i in todo]
        seeds = [rows[i]["seed"] for i in todo]
        results = self._run(images, masks, prompts, seeds)
        finished, peak = time.time(), self._peak_mb()
        for i, res in zip(todo, results, strict=False):
            row = rows[i]
            row.update(worker=self.worker, node=self.node, device=self.device, peak_mem_mb=peak,
                       started_at=started, finished_at=finished)
            if isinstance(res, str):
                row["error"] = res
                continue
            row.update(sample_s=res.sample_s, batch_size=res.batch_size, nfe=res.nfe,
                       residual_init=res.residual_init, residual_final=res.residual_final, error=res.error)
            if res.error is None:
                row.update(out=_bytes(res.image), height=res.image.shape[0], width=res.image.shape[1])
                row.update({name: _bytes(res.extra_images[name]) for name in self.task.extra_images})

    def _run(self, images, masks, prompts, seeds) -> list:
        """The task over the batch; if the batch fails as a whole (e.g. out of memory), each item is
        retried alone so one bad item or an oversized batch costs only its own rows."""
        def run(*columns: list, pad: bool = False) -> list:
            n = len(columns[0])
            if not (pad and self.pad_to and n < self.pad_to):
                return self.task.run(self.denoiser, Items(*columns), self.config, **self.keywords)
            # items are independent: the copies change nothing but the shapes the GPU sees
            columns = tuple(list(c) + [c[-1]] * (self.pad_to - n) for c in columns)
            results = self.task.run(self.denoiser, Items(*columns), self.config, **self.keywords)[:n]
            for res in results:  # report the real rows: per-item time over them, not over the copies
                res.sample_s, res.batch_size = res.sample_s * self.pad_to / n, n
            return results

        padded = bool(self.pad_to and len(images) < self.pad_to)
        try:
            return run(images, masks, prompts, seeds, pad=True)
        except Exception as exc:  # noqa: BLE001
            if len(images) == 1 and not padded:
                return [_sample_error(exc)]
            log.warning("batch of %d failed (%s); retrying items one by one", len(images), exc)
            self._free()
        out = []
        for args in zip(images, masks, prompts, seeds, strict=True):
            try:
                out.extend(run(*([a] for a in args)))
            except Exception as exc:  # noqa: BLE001
                out.append(_sample_error(exc))
                self._free()
        return out

    def _reset_peak(self) -> None:
        if self.denoiser.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.denoiser.device)

    def _peak_mb(self) -> float:
        """Peak CUDA memory allocated during the batch, or on CPU the process's peak resident set."""
        if self.denoiser.device.type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated(self.denoiser.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _free(self) -> None:
        if self.denoiser.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def _bytes(pixels: np.ndarray) -> bytes:
    return np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def _sample_error(exc: BaseException) -> str:
    from pipeline.errors import one_line

    return one_line("sample", f"{type(exc).__name__}: {exc}")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _whoami() -> tuple[str, str, list]:
    """(worker, node, Ray GPU ids): the Ray actor and node ids inside Ray, else host and pid."""
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            actor = ctx.get_actor_id()
            if actor:
                return actor, ctx.get_node_id(), list(ray.get_gpu_ids())
    except ImportError:
        pass
    return f"pid-{os.getpid()}", socket.gethostname(), []
