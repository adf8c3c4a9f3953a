#!/bin/sh
# The guest's one job: the task qemu handed in through fw_cfg, run by the agent, then power off whatever happened.
fw=/sys/firmware/qemu_fw_cfg/by_name/opt/hermetic
modprobe qemu_fw_cfg
# qemu's user-mode network is always the same: this guest 10.0.2.15, the gateway 10.0.2.2, DNS at 10.0.2.3.
iface=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set lo up
ip link set "$iface" up && ip addr add 10.0.2.15/24 dev "$iface" && ip route add default via 10.0.2.2
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
mkdir -p /etc/hermetic /work && chown builder:builder /work
if cp "$fw/task.json/raw" /etc/hermetic/task.json && chmod 0400 /etc/hermetic/task.json; then
  args=$(cat "$fw/args/raw" 2>/dev/null)
  # shellcheck disable=SC2086 # the args are flags the host script chose
  /opt/hermetic/node /opt/hermetic/agent.mjs --workdir /work --spec /etc/hermetic/task.json --isolate-steps $args
  echo "hermetic-guest: the agent exited with $?"
else
  echo "hermetic-guest: no task in fw_cfg"
fi
systemctl poweroff
