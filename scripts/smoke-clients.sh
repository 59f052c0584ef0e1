#!/usr/bin/env bash
# Smoke test with outside S3 clients against `gateway dev`: the aws cli, boto3, s3cmd and rclone
# each create a bucket, upload and download a 100 MiB file (multipart where the client splits),
# list, copy and delete, comparing bytes. Then a bucket mirrored to another S3 implementation
# (moto's server): its copies carry the bytes, metadata and tags, and tag changes follow; and a
# bucket falling back to moto copies objects in with their tags. Needs a built workspace
# (target/debug) and python3.
#
#   scripts/smoke-clients.sh            # installs the clients into a venv under target/
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="$(mktemp -d)"
venv="$root/target/smoke-venv"
port="${SMOKE_PORT:-19400}"
endpoint="http://127.0.0.1:$port"

gateway_pid=""
moto_pid=""
cleanup() {
    for pid in $gateway_pid $moto_pid; do
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '[smoke] %s\n' "$*"; }

for bin in gateway storage-node; do
    [ -x "target/debug/$bin" ] || { say "target/debug/$bin is missing: cargo build --workspace first"; exit 1; }
done

# Clients: current aws cli, boto3 and s3cmd from PyPI, and moto's S3 server as the mirror's
# remote; rclone from Debian.
if [ ! -x "$venv/bin/aws" ] || [ ! -x "$venv/bin/s3cmd" ] || [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade awscli boto3 s3cmd 'moto[server]'
fi
if ! command -v rclone >/dev/null; then
    apt-get install -y -qq rclone >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq rclone; }
fi
"$venv/bin/aws" --version
"$venv/bin/s3cmd" --version
command rclone version | sed -n 1p  # sed reads it all: head could make rclone die of SIGPIPE under pipefail

say "starting gateway dev on $endpoint"
./target/debug/gateway dev --nodes 6 --data "$work/dev" --listen "127.0.0.1:$port" \
    >"$work/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 1 600); do
    [ -s "$work/dev/cluster.json" ] && break
    kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log"; exit 1; }
    sleep 0.1
done
[ -s "$work/dev/cluster.json" ] || { say "gateway dev did not come up"; cat "$work/gateway.log"; exit 1; }
key() { python3 -c "import json,sys; print(json.load(open('$work/dev/cluster.json'))['$1'])"; }
export AWS_ACCESS_KEY_ID="$(key access_key)" AWS_SECRET_ACCESS_KEY="$(key secret_key)"
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

head -c $((100 * 1024 * 1024)) /dev/urandom >"$work/big"
head -c 12345 /dev/urandom >"$work/small"

same() { cmp -s "$1" "$2" || { say "MISMATCH: $1 vs $2"; exit 1; }; }

say "aws cli"
aws=("$venv/bin/aws" --endpoint-url "$endpoint")
"${aws[@]}" s3 mb s3://awscli
"${aws[@]}" s3 cp "$work/big" s3://awscli/dir/big --only-show-errors
"${aws[@]}" s3 cp "$work/small" s3://awscli/small --only-show-errors
"${aws[@]}" s3 ls s3://awscli --recursive
"${aws[@]}" s3 cp s3://awscli/dir/big s3://awscli/big-copy --only-show-errors
"${aws[@]}" s3 cp s3://awscli/big-copy "$work/aws-big" --only-show-errors
same "$work/big" "$work/aws-big"
"${aws[@]}" s3 cp s3://awscli/small "$work/aws-small" --only-show-errors
same "$work/small" "$work/aws-small"
"${aws[@]}" s3 rm s3://awscli --recursive --only-show-errors
"${aws[@]}" s3 rb s3://awscli

say "boto3"
"$venv/bin/python" - "$endpoint" "$work" <<'EOF'
import filecmp, sys
import boto3
from boto3.s3.transfer import TransferConfig
endpoint, work = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
s3.create_bucket(Bucket="boto3")
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
s3.upload_file(f"{work}/big", "boto3", "big", Config=cfg)
s3.put_object(Bucket="boto3", Key="small", Body=open(f"{work}/small", "rb").read())
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="boto3")["Contents"]]
assert keys == ["big", "small"], keys
s3.copy({"Bucket": "boto3", "Key": "big"}, "boto3", "big-copy", Config=cfg)
s3.download_file("boto3", "big-copy", f"{work}/boto-big", Config=cfg)
assert filecmp.cmp(f"{work}/big", f"{work}/boto-big", shallow=False)
body = s3.get_object(Bucket="boto3", Key="small")["Body"].read()
assert body == open(f"{work}/small", "rb").read()
for k in ["big", "big-copy", "small"]:
    s3.delete_object(Bucket="boto3", Key=k)
s3.delete_bucket(Bucket="boto3")
print("boto3 ok")
EOF

say "s3cmd"
s3cmd=("$venv/bin/s3cmd" --no-ssl --host="127.0.0.1:$port" --host-bucket="127.0.0.1:$port"
    --access_key="$AWS_ACCESS_KEY_ID" --secret_key="$AWS_SECRET_ACCESS_KEY" --region=us-east-1
    --config=/dev/null --no-check-md5)
"${s3cmd[@]}" mb s3://s3cmd
"${s3cmd[@]}" put --multipart-chunk-size-mb=15 "$work/big" s3://s3cmd/big
"${s3cmd[@]}" ls s3://s3cmd
"${s3cmd[@]}" cp s3://s3cmd/big s3://s3cmd/big-copy
"${s3cmd[@]}" get s3://s3cmd/big-copy "$work/s3cmd-big"
same "$work/big" "$work/s3cmd-big"
"${s3cmd[@]}" del s3://s3cmd/big s3://s3cmd/big-copy
"${s3cmd[@]}" rb s3://s3cmd

say "rclone"
export RCLONE_CONFIG_GW_TYPE=s3 RCLONE_CONFIG_GW_PROVIDER=Other RCLONE_CONFIG_GW_ENDPOINT="$endpoint"
export RCLONE_CONFIG_GW_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_GW_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
export RCLONE_CONFIG_GW_REGION=us-east-1 RCLONE_CONFIG_GW_FORCE_PATH_STYLE=true
# rclone's AWS SDK refuses a custom CA bundle (set on some machines for a proxy) on its own
# transport; the endpoint here is plain http on loopback, so it needs none.
rclone() { env -u AWS_CA_BUNDLE rclone --config /dev/null "$@"; }
rclone mkdir gw:rclone
rclone copyto "$work/big" gw:rclone/big --s3-chunk-size 16M --s3-upload-cutoff 16M
rclone lsl gw:rclone
rclone copyto gw:rclone/big gw:rclone/big-copy
rclone copyto gw:rclone/big-copy "$work/rclone-big"
same "$work/big" "$work/rclone-big"
rclone delete gw:rclone
rclone rmdir gw:rclone

say "mirror to moto"
mport=$((port + 50))
"$venv/bin/moto_server" -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 &
moto_pid=$!
moto=("$venv/bin/aws" --endpoint-url "http://127.0.0.1:$mport")
for _ in $(seq 1 300); do
    "${moto[@]}" s3 ls >/dev/null 2>&1 && break
    kill -0 "$moto_pid" 2>/dev/null || { cat "$work/moto.log"; exit 1; }
    sleep 0.1
done
"${moto[@]}" s3 mb s3://offsite
"${aws[@]}" s3 mb s3://mirrored
GATEWAY_DATA_DIR="$work/dev/gateway" GATEWAY_ADMIN_LISTEN="127.0.0.1:$((port + 1))" \
    REMOTE_SECRET_ACCESS_KEY=moto-secret ./target/debug/gateway remote set mirrored \
    --remote-bucket offsite --endpoint "http://127.0.0.1:$mport" --path-style \
    --access-key-id moto-key --mirror sync
head -c $((20 * 1024 * 1024)) /dev/urandom >"$work/medium"
# A synchronous mirror acknowledges each write once the remote has it: no waiting below. The
# 20 MiB object goes to the remote as a multipart upload, the small one in one PUT.
tags_of() {  # bucket key: "k=v" lines, sorted
    "${@:3}" s3api get-object-tagging --bucket "$1" --key "$2" \
        --query 'TagSet[].[Key,Value]' --output text | tr '\t' '=' | sort
}
expect_tags() {  # remote key, expected lines
    local got
    got="$(tags_of offsite "$1" "${moto[@]}")"
    [ "$got" = "$2" ] || { say "remote tags of $1: got '$got', expected '$2'"; exit 1; }
}
for name in small medium; do
    "${aws[@]}" s3api put-object --bucket mirrored --key "$name" --body "$work/$name" \
        --content-type text/plain --metadata origin=smoke --tagging 'team=blue&note=a%20b' >/dev/null
    expect_tags "$name" $'note=a b\nteam=blue'
    "${moto[@]}" s3 cp "s3://offsite/$name" "$work/moto-$name" --only-show-errors
    same "$work/$name" "$work/moto-$name"
    head="$("${moto[@]}" s3api head-object --bucket offsite --key "$name" --query '[ContentType,Metadata.origin]' --output text)"
    [ "$head" = $'text/plain\tsmoke' ] || { say "remote head of $name: $head"; exit 1; }
done
"${aws[@]}" s3api put-object-tagging --bucket mirrored --key medium \
    --tagging 'TagSet=[{Key=team,Value=red}]'
expect_tags medium "team=red"
"${aws[@]}" s3api delete-object-tagging --bucket mirrored --key small
expect_tags small ""
"${aws[@]}" s3 rm s3://mirrored --recursive --only-show-errors
[ -z "$("${moto[@]}" s3 ls s3://offsite)" ] || { say "the remote still holds deleted keys"; exit 1; }

say "fallback with copy-in from moto"
"${moto[@]}" s3 mb s3://legacy
"${moto[@]}" s3api put-object --bucket legacy --key old --body "$work/small" \
    --tagging 'kept=yes' >/dev/null
"${aws[@]}" s3 mb s3://migrated
GATEWAY_DATA_DIR="$work/dev/gateway" GATEWAY_ADMIN_LISTEN="127.0.0.1:$((port + 1))" \
    REMOTE_SECRET_ACCESS_KEY=moto-secret ./target/debug/gateway remote set migrated \
    --remote-bucket legacy --endpoint "http://127.0.0.1:$mport" --path-style \
    --access-key-id moto-key --fallback --copy-in
"${aws[@]}" s3 cp s3://migrated/old "$work/fallback-old" --only-show-errors
same "$work/small" "$work/fallback-old"
# The read queued a copy-in; the copy keeps the remote's tags.
for _ in $(seq 1 100); do
    [ "$(tags_of migrated old "${aws[@]}")" = "kept=yes" ] && break
    sleep 0.1
done
[ "$(tags_of migrated old "${aws[@]}")" = "kept=yes" ] || { say "the copied-in object lost its tags"; exit 1; }

say "all clients passed"
