#!/usr/bin/env bash
# The sampler mutants: apply each, run the pinned-number tests (recorded slices of the tiny models and
# errors against the exact posterior of oracle-gauss), restore. Each must fail both kinds. The J·e
# mutants (a 5th argument) run the tests that hold the blockwise J·e to the math-attention one.
cd "$(dirname "$0")/.."
run() {
  name="$1"; file="$2"; old="$3"; new="$4"; tests="${5:-tests/test_pinned_numbers.py tests/oracles/test_oracle_errors.py}"
  cp "$file" /tmp/mut_backup
  python3 - "$file" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
assert s.count(old) == 1, (p, old, s.count(old))
open(p, "w").write(s.replace(old, new))
PY
  [ $? -eq 0 ] || { echo "$name: mutant does not apply (the code moved?)"; return; }
  out=$(.venv/bin/python -m pytest -q $tests -p no:cacheprovider 2>&1 | tail -1)
  cp /tmp/mut_backup "$file"
  echo "$name: $out"
}
run "reversed lr" fcs/samplers/newton.py "Newton(learning_rates(newton_steps, lr), h" "Newton(learning_rates(newton_steps, lr)[::-1], h"
run "wrong alpha in ddim" fcs/schedule.py "x = alpha_next * x0 + max(sigma_next**2 - s**2, 0.0) ** 0.5 * eps" "x = alpha * x0 + max(sigma_next**2 - s**2, 0.0) ** 0.5 * eps"
run "stale eps" fcs/samplers/newton.py "state.eps[idx], state.x0[idx] = denoiser.predict(" "_, state.x0[idx] = denoiser.predict("
run "h ignored" fcs/samplers/jacobian.py "dt = h / per_item_max(e)" "dt = 0.005 / per_item_max(e)"
run "max over batch" fcs/constraints/base.py "return x.detach().abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))" "return x.detach().abs().flatten(1).amax(1).amax().clamp_min(1e-12).expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))"
run "max over batch (newton only)" fcs/samplers/newton.py "state.x[idx] += rate * scale * d / per_item_max(d)" "state.x[idx] += rate * scale * d / d.abs().max()"
run "replacement pastes unnoised" fcs/samplers/replacement.py "noised = alpha * constraint.target + sigma" "noised = constraint.target + sigma"
run "dps gradient ascent" fcs/samplers/dps.py "state.x = state.x - self.step_size * self.grad" "state.x = state.x + self.step_size * self.grad"
run "cg step without line search" fcs/samplers/moment.py "step = torch.where(running, r2 / curvature.clamp_min(1e-30), torch.zeros_like(r2))" "step = torch.where(running, torch.ones_like(r2), torch.zeros_like(r2))"
run "cg without conjugation" fcs/samplers/moment.py "p, jp = g + beta * p, jg + beta * jp" "p, jp = g, jg"
run "cg keeps the stale eps" fcs/samplers/moment.py "state.eps = (state.x - alpha * x0) / sigma" "pass"
run "cg probes J at the corrected x0" fcs/samplers/moment.py "jg[idx] = jacobian_direction(denoiser, state.x[idx], state.x0[idx], g[idx]" "jg[idx] = jacobian_direction(denoiser, state.x[idx], x0[idx], g[idx]"
run "cg without backtracking" fcs/samplers/moment.py "    for _ in range(times):" "    for _ in range(0):"
run "2m extrapolates backwards" fcs/schedule.py "step = x0 + (h / (2 * h_prev)) * (x0 - previous_x0)" "step = x0 - (h / (2 * h_prev)) * (x0 - previous_x0)"
run "2m keeps the stale eps" fcs/schedule.py "return step, eps + (self.alphas[i] / self.sigmas[i]) * (x0 - step)" "return step, eps"
run "log-SNR grid ignored" fcs/samplers/loop.py "    if spacing == \"model\":" "    if True:"
JE=tests/families/test_attention_jvp.py
run "attention tangent drops rowsum(P dS) O" fcs/attention_jvp.py "piece = pds @ v - pds.sum(-1, keepdim=True, dtype=torch.float32).to(out.dtype) * out[..., rows, :]" "piece = pds @ v" "$JE"
run "attention tangent without the scale" fcs/attention_jvp.py "pds = ds.mul_(p).mul_(ctx.scale)" "pds = ds.mul_(p)" "$JE"
run "attention tangent drops dK" fcs/attention_jvp.py "                ds.add_(q[..., rows, :] @ dk.transpose(-2, -1))" "                pass" "$JE"
run "group norm tangent keeps the mean" fcs/attention_jvp.py "tangent = (d - d_mean.to(x.dtype) - normed * dot.to(x.dtype)) * rstd.to(x.dtype)" "tangent = (d - normed * dot.to(x.dtype)) * rstd.to(x.dtype)" "$JE"
run "feed-forward chunks reordered" fcs/attention_jvp.py "return torch.cat([forward(h, *args, **kwargs) for h in hidden_states.split(FEED_FORWARD_TOKENS, 1)], 1)" "return torch.cat([forward(h, *args, **kwargs) for h in hidden_states.split(FEED_FORWARD_TOKENS, 1)][::-1], 1)" "$JE"
git status --short fcs
