#!/bin/sh
# Fake GitHub Actions runner (testkit). It runs no job: it speaks the fake-runner contract
# with the fake GitHub — POST {server_url}/_fake/runner/poll about every 200 ms — and exits
# when its job is done (0), its registration is removed (0), its credential is rejected (1) or
# GitHub refuses its version as deprecated (7, after printing GitHub's message, as the real
# runner does). Each poll names the runner's version in X-Runner-Version.
# The JIT config comes from ACTIONS_RUNNER_INPUT_JITCONFIG (or --jitconfig, as the Go
# integration passes it); the credential reaches curl on stdin, never in an argv.
jit="${ACTIONS_RUNNER_INPUT_JITCONFIG:-}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --jitconfig) jit="${2:-}"; shift ;;
  esac
  shift
done
unset ACTIONS_RUNNER_INPUT_JITCONFIG
if [ -z "$jit" ]; then
  echo "fake runner: no JIT config (ACTIONS_RUNNER_INPUT_JITCONFIG)" >&2
  exit 2
fi
json=$(printf '%s' "$jit" | base64 -d 2>/dev/null) || json=$(printf '%s' "$jit" | base64 -D 2>/dev/null) || json=''
field() { printf '%s' "$json" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
server_url=$(field server_url)
credential=$(field credential)
runner_name=$(field runner_name)
jit=''
if [ -z "$server_url" ] || [ -z "$credential" ]; then
  echo "fake runner: unreadable JIT config" >&2
  exit 2
fi
echo "Current runner version: '__VERSION__'"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): Listening for Jobs as $runner_name"
interval="${FAKE_RUNNER_POLL_INTERVAL:-0.2}"
give_up="${FAKE_RUNNER_GIVE_UP_SECS:-60}"
last_ok=$(date +%s)
running=0
while :; do
  out=$(printf 'header = "Authorization: Bearer %s"\nheader = "X-Runner-Version: __VERSION__"\n' "$credential" \
    | curl -sS -K - -X POST --max-time 5 -o - -w '\n%{http_code}' "$server_url/_fake/runner/poll" 2>/dev/null)
  code=$(printf '%s\n' "$out" | tail -n 1)
  body=$(printf '%s\n' "$out" | sed '$d')
  case "$code" in
    200)
      last_ok=$(date +%s)
      state=$(printf '%s' "$body" | sed -n 's/.*"state" *: *"\([a-z]*\)".*/\1/p')
      case "$state" in
        running)
          if [ "$running" = 0 ]; then
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): Running job"
            running=1
          fi ;;
        done)
          echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): Job completed with result: Succeeded"
          exit 0 ;;
        removed)
          echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): Runner registration removed"
          exit 0 ;;
      esac ;;
    401)
      echo "fake runner: credential rejected (401)" >&2
      exit 1 ;;
    403)
      message=$(printf '%s' "$body" | sed -n 's/.*"message" *: *"\([^"]*\)".*/\1/p')
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): An error occurred: ${message:-access denied (403)}"
      exit 7 ;;
    *)
      now=$(date +%s)
      if [ $((now - last_ok)) -ge "$give_up" ]; then
        echo "fake runner: GitHub unreachable for ${give_up}s, giving up" >&2
        exit 3
      fi ;;
  esac
  sleep "$interval"
done
