#!/usr/bin/env bash
# Makes sure the local run's tokens exist, and prints the file's path (never the tokens):
#   DAPR_API_TOKEN  every daprd requires it on its API (header dapr-api-token); the apps send it
#   APP_API_TOKEN   every daprd sends it to its app; the app channel answers 401 without it
# They are generated once per data directory ($RUN_DIR/secrets/tokens.env, readable by its
# owner only). To rotate them: stop everything (`make down`), delete the file, `make run`.
set -euo pipefail
dir="${RUN_DIR:?RUN_DIR is not set}/secrets"
file="$dir/tokens.env"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -s "$file" ]; then
  token() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
  tmp="$file.tmp.$$"
  printf 'DAPR_API_TOKEN=%s\nAPP_API_TOKEN=%s\n' "$(token)" "$(token)" >"$tmp"
  mv "$tmp" "$file"
  echo "tokens: generated $file" >&2
fi
chmod 600 "$file"
echo "$file"
