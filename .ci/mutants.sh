#!/usr/bin/env bash
# The five sampler mutants of issue 11: apply each, run the pinned-number tests, restore. Each must fail.
cd "$(dirname "$0")/.."
run() {
  name="$1"; file="$2"; old="$3"; new="$4"
  cp "$file" /tmp/mut_backup
  python3 - "$file" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
assert s.count(old) == 1, (p, old, s.count(old))
open(p, "w").write(s.replace(old, new))
PY
  out=$(.venv/bin/python -m pytest -q -x tests/test_pinned_numbers.py -p no:cacheprovider 2>&1 | tail -1)
  cp /tmp/mut_backup "$file"
  echo "$name: $out"
}
run "reversed lr" fcs/samplers/newton.py "lrs = learning_rates(newton_steps, lr)" "lrs = learning_rates(newton_steps, lr)[::-1]"
run "wrong alpha in ddim" fcs/samplers/common.py "x = alpha_prev**0.5 * x0 + max(1 - alpha_prev - sigma**2, 0.0) ** 0.5 * eps" "x = alpha_t**0.5 * x0 + max(1 - alpha_prev - sigma**2, 0.0) ** 0.5 * eps"
run "stale eps" fcs/samplers/newton.py "eps[idx], x0[idx] = denoiser.predict(x[idx], t, sub_cond)" "_, x0[idx] = denoiser.predict(x[idx], t, sub_cond)"
run "h ignored" fcs/samplers/newton.py "dt = h / per_item_max(e)" "dt = 0.005 / per_item_max(e)"
run "max over batch" fcs/constraints/base.py "return x.detach().abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))" "return x.detach().abs().flatten(1).amax(1).amax().clamp_min(1e-12).expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))"
run "max over batch (newton only)" fcs/samplers/newton.py "x[idx] += rate * d / per_item_max(d)" "x[idx] += rate * d / d.abs().max()"
git status --short fcs
