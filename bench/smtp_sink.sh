# Sourced by the benchmarks: Postfix's smtp-sink on 127.0.0.1:$port, unpacked from Debian's
# postfix package (not installed); `$postfix` is where, `$sink` its pid (the caller kills it).
postfix=target/bench/postfix
if [ ! -x "$postfix/usr/sbin/smtp-sink" ]; then
  mkdir -p target/bench
  (cd target/bench && rm -f postfix_*.deb && apt-get download postfix >/dev/null)
  dpkg -x target/bench/postfix_*.deb "$postfix"
fi
export LD_LIBRARY_PATH="$PWD/$postfix/usr/lib/postfix"
port=25250
"$postfix/usr/sbin/smtp-sink" -u nobody "127.0.0.1:$port" 1024 &
sink=$!
