"""`ray up cluster-local.yaml` for real: Ray's cluster launcher reaches this machine over ssh, starts the head, a
tiny job runs through `ray job submit`, the dashboard reports it, and `ray down` leaves nothing running.

The set-up installs an ssh server if there is none (Debian's openssh-server, and rsync for the launcher's file
mounts) and starts a private one on 127.0.0.1:22 that accepts one generated key and nothing else (no passwords).
The cluster runs as a user of its own: `ray down` runs `ray stop` on the head, which ends every Ray process *of
that user*, so under a dedicated user it cannot touch the Ray instances of whoever runs the suite. The launcher's
config is cluster-local.yaml as shipped, with test-only changes: that user and key, the checkout's own virtualenv
linked in (so install.sh finds it installed; the folders on the way to its interpreter get o+x for the test's
duration, restored after), the repo's tracked files as the mount's source (a copy the user can read), no model
download (the tiny job needs none), and a temp dir of its own.
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
USER = "memroute-rayup"
DASHBOARD = "http://127.0.0.1:8275"


def sh(*cmd, timeout=600, check=True, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def ensure_tools() -> None:
    missing = [p for p, exe in (("openssh-server", "/usr/sbin/sshd"), ("rsync", "rsync")) if not shutil.which(exe)]
    if missing:
        if not shutil.which("apt-get"):
            pytest.skip(f"needs {', '.join(missing)} and there is no apt-get to install them")
        proc = sh("apt-get", "install", "-y", "--no-install-recommends", *missing, check=False, timeout=900,
                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            pytest.skip(f"could not install {', '.join(missing)}: {proc.stderr[-500:]}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def sshd(tmp_path):
    """A private sshd on 127.0.0.1:22 for USER, key auth only; yields (user's home, the client key)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it starts an sshd and creates the cluster's own user")
    if not port_free(22):
        pytest.skip("127.0.0.1:22 is taken (Ray's launcher always connects to port 22)")
    ensure_tools()
    try:
        pwd.getpwnam(USER)
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/bash", USER)
    sh("usermod", "-p", "*", USER)  # no password at all, but not "locked": sshd refuses locked accounts' keys
    home = Path(pwd.getpwnam(USER).pw_dir)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    key, host_key = ssh_dir / "rayup_test_key", tmp_path / "host_key"  # the launcher (the user) reads the key
    for k in (key, Path(f"{key}.pub")):
        k.unlink(missing_ok=True)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
    (ssh_dir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    sh("chown", "-R", f"{USER}:{USER}", ssh_dir)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    config = tmp_path / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", "Port 22", f"HostKey {host_key}", f"PidFile {tmp_path / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin no", f"AllowUsers {USER}", "UsePAM no", "AuthorizedKeysFile .ssh/authorized_keys",
        "AllowTcpForwarding yes", "MaxStartups 64", ""]))
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(tmp_path / "sshd.log")])
    deadline = time.monotonic() + 30
    while port_free(22) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_free(22), (tmp_path / "sshd.log").read_text()
    try:
        yield home, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def reachable_interpreter(user: str):
    """The directories on the way to this Python that `user` may not traverse (a pyenv build under /root, say) get
    o+x for the test; returns what to restore. Without them the cluster's user cannot run the checkout's venv."""
    changed = []
    for parent in reversed(Path(os.path.realpath(sys.executable)).parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
            changed.append((parent, mode))
    return changed


def user_processes() -> list[str]:
    return [line for line in sh("ps", "-u", USER, "-o", "pid=,args=", check=False).stdout.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_ray_up_submit_and_down_over_ssh(sshd, tmp_path):
    home, key = sshd
    venv = Path(sys.executable).parents[1]
    cfg = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
    cfg["cluster_name"] = "memroute-rayup-test"
    cfg["auth"] = {"ssh_user": USER, "ssh_private_key": str(key)}
    shipped = cfg["setup_commands"]
    assert "./install.sh" in shipped[0] and "model fetch" in shipped[-1]
    # the shipped set-up but the model download: install.sh finds the linked venv installed, the token is made
    cfg["setup_commands"] = [f"mkdir -p ~/memroute && ln -sfn {venv} ~/memroute/.venv", *shipped[:-1]]
    # the repo's tracked files, copied where the user can read them: a checkout's runs/ may hold files only its
    # owner can read, and the launcher hashes every file of a mount's source
    src = home / "rayup-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    files = sh("git", "ls-files", "-z", cwd=REPO).stdout
    sh("rsync", "-a", "--from0", "--files-from=-", f"{REPO}/", f"{src}/", input=files)
    sh("chown", "-R", f"{USER}:{USER}", src)
    assert list(cfg["file_mounts"].values()) == ["."]
    cfg["file_mounts"] = {key_: str(src) for key_ in cfg["file_mounts"]}
    # its own temp dir: /tmp/ray-memroute may belong to another user's `memroute cluster`
    cfg["head_start_ray_commands"] = [c.replace("/tmp/ray-memroute", "/tmp/ray-rayup-test")
                                      for c in cfg["head_start_ray_commands"]]
    # the launcher runs as the cluster's user too: on one machine it shares the local provider's state files
    # (/tmp/ray/cluster-<name>.*) with the head's autoscaler, which must be able to open them
    config = home / "rayup-test.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    sh("chown", f"{USER}:{USER}", config)
    # the local provider's record of this test cluster from an earlier run (it says "terminated", and a new
    # `ray up` would wait on that node forever); the name is this test's alone
    for stale in Path("/tmp/ray").glob(f"cluster-{cfg['cluster_name']}.*"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    ray = venv / "bin" / "ray"
    as_user = ["runuser", "-u", USER, "--", "env", f"HOME={home}", f"PATH={env['PATH']}", ray]
    restore = reachable_interpreter(USER)
    try:
        up = sh(*as_user, "up", "-y", "--no-config-cache", config, cwd=REPO, env=env, timeout=1500, check=False)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        token = home / ".ray" / "auth_token"
        assert token.exists() and (token.stat().st_mode & 0o077) == 0, "the head's token is private"
        assert (home / "memroute" / "pyproject.toml").exists()  # the launcher's file mount: the repo, rsynced

        # the head runs `ray start --block` in the background: `ray up` returns before its dashboard answers
        deadline, version = time.monotonic() + 300, None
        while version is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{DASHBOARD}/api/version", timeout=5) as resp:
                    version = json.loads(resp.read())
            except urllib.error.HTTPError as e:  # it answers (an auth refusal is an answer)
                version = {"status": e.code}
            except OSError:
                time.sleep(2)
        head_log = Path("/tmp/ray-rayup-test/session_latest/logs/gcs_server.out")
        log_tail = head_log.read_text()[-3000:] if head_log.exists() else "-"
        assert version, f"the dashboard never answered; head log:\n{log_tail}"
        job_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        entry = ["python", "-c", "import ray; ray.init(); print('cpus', ray.cluster_resources()['CPU'])"]
        job = sh(ray, "job", "submit", "--address", DASHBOARD, "--submission-id", "rayup-tiny", "--", *entry,
                 env=job_env, cwd=tmp_path, timeout=600, check=False)
        assert job.returncode == 0 and "cpus" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
        req = urllib.request.Request(f"{DASHBOARD}/api/jobs/rayup-tiny",
                                     headers={"Authorization": f"Bearer {token.read_text().strip()}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "SUCCEEDED"  # the dashboard's job API reports it
    finally:
        down = sh(*as_user, "down", "-y", config, cwd=REPO, env=env, timeout=600, check=False)
        deadline = time.monotonic() + 180  # `ray start --block` notices its children are gone and exits
        while user_processes() and time.monotonic() < deadline:
            time.sleep(1)
        left = user_processes()
        if left:  # clean up for the next run before failing
            sh("pkill", "-9", "-u", USER, check=False)
        for path, mode in restore:
            path.chmod(mode)
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    assert not left, f"ray down left processes of {USER} running: {left}"
