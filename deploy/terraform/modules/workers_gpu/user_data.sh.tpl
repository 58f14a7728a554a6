#!/bin/bash
# Synapse GPU worker boot (rendered by Terraform): fetch the model from S3, start one
# `synapse worker` for it under the id {model}-{instance id}, and when it exits because it was
# idle, leave the Auto Scaling group (decrementing its desired capacity): scale to zero.
set -euo pipefail
exec > >(tee -a /var/log/synapse-boot.log) 2>&1

imds() {
    local token
    token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
    curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
INSTANCE_ID=$(imds instance-id)
export AWS_REGION="${region}" AWS_DEFAULT_REGION="${region}"

mkdir -p /opt/synapse/models
aws s3 cp "s3://${model_bucket}/${model_key}" /opt/synapse/models/model.gguf --only-show-errors
REDIS_TOKEN=$(aws ssm get-parameter --with-decryption --name "${redis_token_parameter}" \
    --query Parameter.Value --output text)

registry="${image}"
registry="$${registry%%/*}"
aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
docker pull "${image}"

leave() {
    echo "synapse: leaving the group ($1)"
    aws autoscaling terminate-instance-in-auto-scaling-group --instance-id "$INSTANCE_ID" \
        --should-decrement-desired-capacity || shutdown -h now
}

for attempt in 1 2 3; do
    set +e
    docker run --rm --name synapse-worker --network host \
        --log-driver awslogs --log-opt awslogs-region="${region}" \
        --log-opt awslogs-group="${log_group}" --log-opt awslogs-stream="$INSTANCE_ID" \
        -v /opt/synapse/models:/models:ro \
        -e SYNAPSE_REDIS_TLS_ENDPOINT="${redis_tls_endpoint}" \
        -e SYNAPSE_REDIS_AUTH_TOKEN="$REDIS_TOKEN" \
        "${image}" worker --model /models/model.gguf --name "${model_name}" \
        --id "${model_name}-$INSTANCE_ID" --idle-timeout "${idle_timeout}" \
        --max-seqs "${max_seqs}" --drain-timeout 60
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
        leave "idle"
        exit 0
    fi
    echo "synapse: worker exited with status $status (attempt $attempt)"
    sleep 5
done
leave "worker failed 3 times"
