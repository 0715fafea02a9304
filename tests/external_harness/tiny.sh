#!/bin/bash
# The smallest CLI harness Orchard can run (docs/external-harnesses.md): it reads the task from
# $ORCHARD_TASK_FILE, asks the model at $OPENAI_BASE_URL with $OPENAI_API_KEY, runs each `bash` tool call
# in $ORCHARD_WORKDIR, and sends the output back, until the model submits or stops calling tools.
set -u
cd "$ORCHARD_WORKDIR"
ask() {  # the conversation file in, the reply's command (or nothing) out; the reply appended
    python3 - "$1" <<'PY'
import json, os, sys, urllib.request
path = sys.argv[1]
messages = json.load(open(path))
tools = [{"type": "function", "function": {"name": "bash", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]
body = json.dumps({"model": "any", "messages": messages, "tools": tools}).encode()
request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", data=body, headers={
    "Content-Type": "application/json", "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
message = json.load(urllib.request.urlopen(request, timeout=600))["choices"][0]["message"]
messages.append(message)
json.dump(messages, open(path, "w"))
calls = message.get("tool_calls") or []
if calls:
    print(calls[0]["id"] + "\t" + json.loads(calls[0]["function"]["arguments"])["command"])
PY
}
answer() {  # append the command's output as the tool message answering call $2
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, call_id, output = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
messages = json.load(open(path))
messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
json.dump(messages, open(path, "w"))
PY
}
chat=$(mktemp)
python3 -c 'import json, os, sys; json.dump([{"role": "user", "content": open(os.environ["ORCHARD_TASK_FILE"]).read()}], open(sys.argv[1], "w"))' "$chat"
for _ in $(seq 20); do
    reply=$(ask "$chat") || exit 1
    [ -z "$reply" ] && exit 0
    call_id=${reply%%$'\t'*}
    command=${reply#*$'\t'}
    [ "$command" = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" ] && exit 0
    out=$(mktemp)
    bash -c "$command" >"$out" 2>&1
    answer "$chat" "$call_id" "$out"
done
