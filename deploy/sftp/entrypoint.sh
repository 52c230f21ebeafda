#!/usr/bin/env bash
# Accounts from /etc/sftp/users.conf, one per line (the format of deploy/sftp-users.conf):
#   name:HASH:e:uid:gid:dir1,dir2:root  HASH a crypt(3) hash (mkpasswd -m sha-512), "e" for encrypted
#   name::e:uid:gid:dir1,dir2:root      no password: key only, from /etc/sftp/keys/<name>.pub
# Plain-text passwords are refused. Each account is chrooted in /srv/sftp/<root> (default: its name; "." for the
# whole tree, the concentrator's account), owned by root as sshd requires; its directories (inbox, ack, …) are
# created there, owned by the account and writable by its group (give every account the same gid so the
# concentrator's account can read the inboxes and write the receipts).
set -euo pipefail
users=/etc/sftp/users.conf
keys=/etc/sftp/keys

for type in ed25519 rsa; do
  key="/etc/ssh/keys/ssh_host_${type}_key"
  [ -f "$key" ] || ssh-keygen -q -t "$type" -N "" -f "$key"
done

[ -r "$users" ] || { echo "sftp: no accounts file ${users}" >&2; exit 1; }
n=0
while IFS= read -r line || [ -n "$line" ]; do
  line="${line%%#*}"
  [ -n "${line//[[:space:]]/}" ] || continue
  IFS=: read -r name hash flag uid gid dirs root <<<"$line"
  n=$((n + 1))
  if ! [[ "$name" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || ! [[ "$uid" =~ ^[0-9]+$ ]] || ! [[ "$gid" =~ ^[0-9]+$ ]]; then
    echo "sftp: ${users} line ${n}: expected name:HASH:e:uid:gid:dirs" >&2; exit 1
  fi
  if [ -n "$hash" ] && [ "$flag" != "e" ]; then
    echo "sftp: ${users} line ${n} (${name}): plain-text password refused, give a crypt hash and the e flag" >&2
    exit 1
  fi
  root="${root:-$name}"
  [[ "$root" =~ ^(\.|[A-Za-z0-9_-]+)$ ]] || { echo "sftp: line ${n}: bad root ${root}" >&2; exit 1; }
  home="/srv/sftp/${root}"; [ "$root" = . ] && home=/srv/sftp
  getent group "$gid" >/dev/null || groupadd -g "$gid" "g${gid}"
  if ! id "$name" >/dev/null 2>&1; then
    useradd -M -d "$home" -s /usr/sbin/nologin -u "$uid" -g "$gid" -G sftponly "$name"
  fi
  if [ -n "$hash" ]; then
    echo "${name}:${hash}" | chpasswd -e
  else
    usermod -p '*' "$name"
  fi
  install -d -o root -g root -m 0755 /srv/sftp "$home"
  IFS=, read -r -a subdirs <<<"${dirs}"
  for d in "${subdirs[@]}"; do
    [[ "$d" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "sftp: line ${n}: bad directory ${d}" >&2; exit 1; }
    [ -d "${home}/${d}" ] || install -d -o "$uid" -g "$gid" -m 2770 "${home}/${d}"
  done
  if [ -f "${keys}/${name}.pub" ]; then
    install -o root -g root -m 0644 "${keys}/${name}.pub" "/etc/ssh/authorized_keys/${name}"
  fi
done <"$users"
echo "sftp: ${n} account(s)"
exec /usr/sbin/sshd -D -e
