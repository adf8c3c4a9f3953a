# Runs many gcloud commands quickly for test/helpers/gcloud-parse.ts: imports gcloud once, loads the command groups
# the commands name once, then forks a child per command that runs gcloud's own main() on that command, as
# `gcloud ARGS` would, with its own HOME and CLOUDSDK_CONFIG. A gcloud process spends over a second of CPU importing
# itself and its command modules; the forked children skip that and only parse and run.
#
# Usage: PYTHON gcloud-forker.py SDK_LIB_DIR; one JSON request a line on stdin:
#   {"preload": ARGV}                                  load the command ARGV names (nothing is printed)
#   {"id": N, "argv": ARGV, "home": DIR, "cwd": DIR}   run it: prints {"id": N, "code": EXIT, "stderr": TEXT}
# "ready" is printed once gcloud is imported. Stdin at its end: waits for the children, then exits.
import json
import os
import select
import sys

lib = sys.argv[1]
sys.path.insert(0, lib)
import gcloud  # noqa: E402  gcloud.py: puts gcloud's vendored packages first on sys.path

sys.path = gcloud.reorder_sys_path(sys.path)
gcloud._fix_google_module()
gcloud_main = gcloud._import_gcloud_main()
cli = gcloud_main.CreateCLI([])
print('ready', flush=True)


def preload(argv):
    element = cli.top_element
    for word in argv:
        if not hasattr(element, 'LoadSubElement') or word.startswith('-'):
            return
        element = element.LoadSubElement(word)
        if element is None:
            return


def child(request):
    os.environ['HOME'] = request['home']
    os.environ['CLOUDSDK_CONFIG'] = os.path.join(request['home'], 'gcloud')
    os.chdir(request['cwd'])
    err = os.open(os.path.join(request['home'], 'stderr'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.argv = ['gcloud'] + request['argv']
    code = 0
    try:
        code = gcloud_main.main(gcloud_cli=cli) or 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException as error:  # gcloud's own handler prints most; this is what it did not
        sys.stderr.write('the forked gcloud crashed: %r\n' % (error,))
        code = 1
    sys.stderr.flush()
    os._exit(code)


running = {}


def reap(block):
    while running:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        request = running.pop(pid)
        with open(os.path.join(request['home'], 'stderr'), errors='replace') as stderr:
            text = stderr.read()
        print(json.dumps({'id': request['id'], 'code': os.waitstatus_to_exitcode(status), 'stderr': text}), flush=True)


def handle(line):
    request = json.loads(line)
    if 'preload' in request:
        preload(request['preload'])
        return
    pid = os.fork()
    if pid == 0:
        child(request)
    running[pid] = request


# Reads stdin's descriptor itself: a buffered reader would hold lines that select() no longer sees.
pending = b''
open_stdin = True
while open_stdin or running:
    if open_stdin and select.select([0], [], [], 0.02)[0]:
        chunk = os.read(0, 1 << 16)
        open_stdin = chunk != b''
        pending += chunk
        *lines, pending = pending.split(b'\n')
        for line in lines:
            if line.strip():
                handle(line)
    reap(block=not open_stdin)
