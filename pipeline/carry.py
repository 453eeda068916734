"""Metadata carried through: input columns a task does not consume reach the output rows unchanged.

Which columns: every input column except ``CONSUMED`` (the id, the pixels the output replaces, the
seed the output records, the mask a masking task consumed, and the source columns the read stage makes),
or exactly the ``keep_columns`` of the job. The output schema is the task's (``Task.schema``) plus the
carried columns with their input (Arrow) types, known on the driver before any work, so every
committed file has one schema. An input column named like an output column (``status``, ``model``, ...)
is refused at discovery rather than renamed: a restored dataset keeps its metadata under its own names.

In flight the carried columns ride as one struct column (``CARRIED``) that each stage passes by
without reading: the stages keep their own fixed schemas and their row order (one row out per row in).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.actor import TaskActor
from pipeline.sources.base import SOURCE_COLUMNS
from pipeline.stages import encode, prepare
from pipeline.tasks import TASKS

CARRIED = "__carried__"
CONSUMED = ("id", "image", "seed", *SOURCE_COLUMNS)  # never carried; "mask" too when the task takes one


def consumed(task: str) -> tuple[str, ...]:
    """The input columns ``task`` uses up: never copied to its output."""
    return CONSUMED + (("mask",) if TASKS[task].mask else ())


def carried_schema(inputs: pa.Schema | None, task: str, keep: Sequence[str] | None = None) -> pa.Schema:
    """The input columns to copy to ``task``'s output: all not consumed (``keep`` None) or exactly
    ``keep``. ValueError naming the columns for a kept column that is absent, consumed, or named like
    an output column."""
    inputs = inputs if inputs is not None else pa.schema([])
    used, outputs = consumed(task), TASKS[task].schema.names
    if keep is None:
        fields = [f for f in inputs if f.name not in used and f.name != CARRIED]
    else:
        absent = [n for n in keep if n not in inputs.names]
        if absent:
            raise ValueError(f"keep_columns: {', '.join(map(repr, absent))} not among the input columns "
                             f"({', '.join(inputs.names) or 'none'})")
        taken = [n for n in keep if n in used]
        if taken:
            raise ValueError(f"keep_columns: {', '.join(map(repr, taken))} consumed by {task} (the output holds "
                             f"its own id, image and seed; the mask is the task's input); drop them from the list")
        fields = [inputs.field(n) for n in dict.fromkeys(keep)]
    clash = [f.name for f in fields if f.name in outputs]
    if clash:
        raise ValueError(f"input column(s) {', '.join(map(repr, clash))} have the names of {task} output columns; "
                         "rename them in the input, or list the columns to keep without them (keep_columns)")
    return pa.schema(fields)


def output_schema(task: str, carried: pa.Schema) -> pa.Schema:
    """What a job of ``task`` writes: the task's output columns, then the carried input columns."""
    return pa.schema(list(TASKS[task].schema) + list(carried))


def pack(batch: pa.Table, carried: pa.Schema) -> pa.Array | None:
    """The carried columns of ``batch`` as one struct array with ``carried``'s types (a column a block
    lacks is null there); None when nothing is carried."""
    if not len(carried):
        return None
    arrays = [batch.column(f.name).combine_chunks().cast(f.type) if f.name in batch.column_names
              else pa.nulls(batch.num_rows, f.type) for f in carried]
    return pa.StructArray.from_arrays(arrays, fields=list(carried))


def _attach(table: pa.Table, packed) -> pa.Table:
    return table if packed is None else table.append_column(CARRIED, packed)


def _detach(batch: pa.Table) -> tuple[pa.Table, pa.Array | None]:
    if CARRIED not in batch.column_names:
        return batch, None
    return batch.drop_columns([CARRIED]), batch.column(CARRIED).combine_chunks()


def prepare_carrying(batch: pa.Table, *, carried: pa.Schema, **kwargs) -> pa.Table:
    """:func:`pipeline.stages.prepare` whose output also holds the batch's carried columns, packed."""
    return _attach(prepare(batch, **kwargs), pack(batch, carried))


def encode_carrying(batch: pa.Table, **kwargs) -> pa.Table:
    """:func:`pipeline.stages.encode`, then the carried columns unpacked after the output columns."""
    inner, packed = _detach(batch)
    out = encode(inner, **kwargs)
    if packed is None:
        return out
    for i, f in enumerate(packed.type):
        out = out.append_column(f, packed.field(i))
    return out


class CarryingTaskActor:
    """A sampler actor (``actor_cls``, default :class:`pipeline.actor.TaskActor`, built with the other
    keyword arguments) on pyarrow batches: the carried column passes by the sampler, which sees the
    numpy batch Ray would have given it."""

    def __init__(self, actor_cls: type = TaskActor, **kwargs) -> None:
        self.sampler = actor_cls(**kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ray.data.block import BlockAccessor

        inner, packed = _detach(batch)
        out = self.sampler(BlockAccessor.for_block(inner).to_batch_format("numpy"))
        return _attach(BlockAccessor.for_block(BlockAccessor.batch_to_block(out)).to_arrow(), packed)
