#!/usr/bin/env bash
# Submit the restoration job to a running Ray cluster through the Ray Jobs API.
#
#   RAY_ADDRESS=http://127.0.0.1:8265 infra/submit_job.sh            # after `ray dashboard infra/aws/cluster.yaml`
#                                                                    # or `kubectl port-forward svc/fcs-head-svc 8265:8265`
# Every setting can be overridden from the environment. The job runs `fcs run restore` on the head
# (the driver); the sampler actors run on the GPU workers. To resume after a failure, run this
# script again with the same INPUT/OUTPUT: ids already written to OUTPUT are skipped.
#
# The clusters in infra/ require Ray's token (RAY_AUTH_MODE=token): give it as RAY_AUTH_TOKEN, or as a
# file in RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token); how to read it from the cluster's secret is
# at the top of infra/kuberay/raycluster.yaml and infra/aws/cluster.yaml. Without one this script stops.
set -euo pipefail

token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "$token_file" ]]; then
    cat >&2 <<MESSAGE
submit_job.sh: no Ray auth token: RAY_AUTH_TOKEN is empty and $token_file is missing or empty.
The cluster refuses jobs without its token. Set it, then rerun:
  KubeRay: export RAY_AUTH_TOKEN="\$(kubectl get secret fcs-ray-token -o jsonpath='{.data.auth_token}' | base64 -d)"
  AWS:     export RAY_AUTH_TOKEN="\$(aws secretsmanager get-secret-value --region us-west-2 --secret-id fcs/ray-auth-token \\
               --query SecretString --output text)"
MESSAGE
    exit 2
fi
export RAY_AUTH_MODE=token   # Ray's client sends the token only in token mode

RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
INPUT="${INPUT:-s3://example-bucket/shards/}"
OUTPUT="${OUTPUT:-s3://example-bucket/restored/}"
MODEL="${MODEL:-s3://example-bucket/models/sd15/}"   # hub id, folder on every node, or object-storage URI
ACTORS="${ACTORS:-4}"                                # one per GPU; at most the GPUs up now (the job checks)
BATCH_SIZE="${BATCH_SIZE:-8}"                        # 8 fits a 24 GB GPU at 512² fp16 (docs/scaling.md)

# Check the cluster before a long job: GPUs, versions, storage and model cache as the cluster sees them.
ray job submit --address "$RAY_ADDRESS" -- fcs doctor "$INPUT" "$OUTPUT" "$MODEL"

exec ray job submit --address "$RAY_ADDRESS" --submission-id "fcs-restore-$(date +%Y%m%d-%H%M%S)" -- \
    fcs run restore \
    --input "$INPUT" \
    --output "$OUTPUT" \
    --model "$MODEL" \
    --actors "$ACTORS" \
    --batch-size "$BATCH_SIZE" \
    "$@"
