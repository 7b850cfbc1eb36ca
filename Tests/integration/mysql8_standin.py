"""A stand-in for a MySQL 8 server's connection phase with caching_sha2_password, for the
`starttls = "mysql"` tests: Debian 12 ships no MySQL 8 server, MariaDB has no
caching_sha2_password server plugin, and no installable package implements its server
side (mysql-mimic on PyPI, the one Python MySQL server, speaks mysql_native_password and
clear-text plugins only). It follows the MySQL 8 protocol byte for byte where a client can
see it, and nothing else:

- greeting (protocol 10, a fresh 20-byte scramble, CLIENT_SSL offered, plugin
  caching_sha2_password); without an SSL request the client gets MySQL's ERR 3159
  (`require_secure_transport = ON`);
- TLS with the given certificate chain and key (the test PKI's);
- caching_sha2_password: the client's SHA-256 proof is checked against the server's
  cache (empty at start: "cold"), fast authentication `0x01 0x03` + OK on a hit, else
  `0x01 0x04` and the clear password + NUL over TLS (full authentication; the cache is
  filled on success); MySQL's ERR 1045 on a wrong password. User `switcher` is first sent
  an auth switch request to caching_sha2_password with a fresh scramble (as a server whose
  greeting scramble is not the one used);
- commands: COM_QUERY answers `SELECT v FROM lab.t` with a real text result set
  (column `v`, row `row-42`), `SHOW STATUS LIKE 'Ssl_cipher'` / `'Ssl_version'` with
  this session's TLS cipher and version, `SELECT CURRENT_USER()`; COM_PING and
  COM_INIT_DB get an OK, COM_QUIT closes; anything else gets ERR 1064.

Each login is logged as one JSON line in --log (the password never): tls, tls_version,
user, auth (full/fast), ok, and for full authentication whether the password came over
TLS. Every socket has a timeout; the process runs until it is stopped (SIGTERM).

    mysql8_standin.py --bind ADDR --port 3306 --cert CHAIN --key KEY --log FILE \
        --account user:password ...
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading

CLIENT_LONG_PASSWORD = 1
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC = 1 << 21
SERVER_CAPS = (CLIENT_LONG_PASSWORD | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41 | CLIENT_SSL |
               CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_STATEMENTS |
               CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_ATTRS | CLIENT_PLUGIN_AUTH_LENENC)
PLUGIN = b"caching_sha2_password"
VERSION = b"8.0.40-tlsgate-lab-standin"
MAX_PACKET = 64 * 1024
STATUS_AUTOCOMMIT = 2


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.seq = 0

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Closed()
            data += chunk
        return data

    def read(self):
        head = self.recv_exact(4)
        length = head[0] | head[1] << 8 | head[2] << 16
        if length > MAX_PACKET:
            raise Closed()
        if head[3] != self.seq:
            raise Closed()
        self.seq = (self.seq + 1) & 0xff
        return self.recv_exact(length)

    def write(self, payload):
        self.sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xff


def lenenc_int(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    return b"\xfd" + struct.pack("<I", n)[:3]


def lenenc_str(b):
    return lenenc_int(len(b)) + b


def read_lenenc(p, at):
    first = p[at]
    if first < 251:
        return first, at + 1
    if first == 0xfc:
        return struct.unpack_from("<H", p, at + 1)[0], at + 3
    if first == 0xfd:
        return int.from_bytes(p[at + 1:at + 4], "little"), at + 4
    return struct.unpack_from("<Q", p, at + 1)[0], at + 9


def ok_packet():
    return b"\x00" + lenenc_int(0) + lenenc_int(0) + struct.pack("<HH", STATUS_AUTOCOMMIT, 0)


def err_packet(code, state, message):
    return b"\xff" + struct.pack("<H", code) + b"#" + state + message.encode()


def eof_packet():
    return b"\xfe" + struct.pack("<HH", 0, STATUS_AUTOCOMMIT)


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def proof_matches(stage2, scramble, proof):
    """caching_sha2_password's fast check: proof = SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || scramble)."""
    if len(proof) != 32:
        return False
    mask = sha256(stage2, scramble)
    stage1 = bytes(a ^ b for a, b in zip(proof, mask))
    return sha256(stage1) == stage2


class Server:
    def __init__(self, args):
        self.accounts = dict(a.split(":", 1) for a in args.account)
        self.cache = {}  # user -> SHA256(SHA256(password)), filled by full authentication
        self.lock = threading.Lock()
        self.log_path = args.log
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(args.cert, args.key)
        self.next_id = 100

    def log(self, **record):
        with self.lock:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def serve(self, bind, port):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind, port))
        listener.listen(16)
        while True:
            sock, peer = listener.accept()
            sock.settimeout(20)
            with self.lock:
                self.next_id += 1
                conn_id = self.next_id
            threading.Thread(target=self.session, args=(sock, peer, conn_id), daemon=True).start()

    def session(self, sock, peer, conn_id):
        record = {"conn": conn_id, "peer": peer[0], "tls": False}
        try:
            self.handle(Conn(sock), peer, conn_id, record)
        except (Closed, OSError, ssl.SSLError, ValueError, IndexError, struct.error) as e:
            record.setdefault("error", "%s: %s" % (type(e).__name__, e))
        finally:
            if "user" in record or "error" in record or "refused" in record:
                self.log(**record)
            try:
                sock.close()
            except OSError:
                pass

    def handle(self, conn, peer, conn_id, record):
        scramble = bytes(b % 94 + 33 for b in os.urandom(20))  # printable, no NUL, like MySQL's
        caps = SERVER_CAPS
        greeting = (b"\x0a" + VERSION + b"\x00" + struct.pack("<I", conn_id) + scramble[:8] + b"\x00" +
                    struct.pack("<H", caps & 0xffff) + bytes([45]) + struct.pack("<H", STATUS_AUTOCOMMIT) +
                    struct.pack("<H", caps >> 16) + bytes([21]) + bytes(10) + scramble[8:] + b"\x00" +
                    PLUGIN + b"\x00")
        conn.write(greeting)
        first = conn.read()
        client_caps = struct.unpack_from("<I", first, 0)[0]
        if len(first) == 32 and client_caps & CLIENT_SSL:
            tls = self.context.wrap_socket(conn.sock, server_side=True)
            conn.sock = tls
            record.update(tls=True, tls_version=tls.version(), tls_cipher=tls.cipher()[0])
            response = conn.read()
        else:
            record["refused"] = "insecure transport"
            conn.write(err_packet(3159, b"HY000", "Connections using insecure transport are prohibited while "
                                                  "--require_secure_transport=ON."))
            return
        client_caps = struct.unpack_from("<I", response, 0)[0]
        at = 32
        end = response.index(b"\x00", at)
        user = response[at:end].decode()
        at = end + 1
        if client_caps & CLIENT_PLUGIN_AUTH_LENENC:
            n, at = read_lenenc(response, at)
        else:
            n, at = response[at], at + 1
        proof = response[at:at + n]
        at += n
        if client_caps & CLIENT_CONNECT_WITH_DB and at < len(response):
            at = response.index(b"\x00", at) + 1
        plugin = b""
        if client_caps & CLIENT_PLUGIN_AUTH and at < len(response):
            end = response.index(b"\x00", at)
            plugin = response[at:end]
        record.update(user=user, client_plugin=plugin.decode())
        password = self.accounts.get(user)
        if user == "switcher" or plugin != PLUGIN:
            # An auth switch to caching_sha2_password with a fresh scramble.
            scramble = bytes(b % 94 + 33 for b in os.urandom(20))
            conn.write(b"\xfe" + PLUGIN + b"\x00" + scramble + b"\x00")
            proof = conn.read()
            record["auth_switch"] = True
        denied = err_packet(1045, b"28000", "Access denied for user '%s'@'%s' (using password: %s)" % (
            user, peer[0], "YES" if proof else "NO"))
        if password is None or not proof:
            record.update(auth="none", ok=False)
            conn.write(denied)
            return
        with self.lock:
            stage2 = self.cache.get(user)
        if stage2 is not None and proof_matches(stage2, scramble, proof):
            conn.write(b"\x01\x03")
            conn.write(ok_packet())
            record.update(auth="fast", ok=True)
        else:
            # Full authentication: over TLS the client sends its password in clear.
            conn.write(b"\x01\x04")
            record["auth"] = "full"
            clear = conn.read()
            record.update(clear_password_over_tls=isinstance(conn.sock, ssl.SSLSocket),
                          password_nul=clear.endswith(b"\x00"))
            if clear.endswith(b"\x00") and clear[:-1] == password.encode():
                with self.lock:
                    self.cache[user] = sha256(sha256(password.encode()))
                conn.write(ok_packet())
                record["ok"] = True
            else:
                conn.write(denied)
                record["ok"] = False
                return
        self.commands(conn, user, record)

    def commands(self, conn, user, record):
        queries = []
        record["queries"] = queries
        while True:
            conn.seq = 0
            try:
                packet = conn.read()
            except Closed:
                return
            if not packet:
                return
            command = packet[0]
            if command == 0x01:  # COM_QUIT
                record["quit"] = True
                return
            if command in (0x02, 0x0e):  # COM_INIT_DB, COM_PING
                conn.write(ok_packet())
                continue
            if command != 0x03:
                conn.write(err_packet(1047, b"08S01", "Unknown command"))
                continue
            query = packet[1:].decode(errors="replace").strip().rstrip(";")
            queries.append(query)
            sock = conn.sock
            answers = {
                "select v from lab.t": (["v"], [["row-42"]]),
                "show status like 'ssl_cipher'": (["Variable_name", "Value"], [["Ssl_cipher", sock.cipher()[0]]]),
                "show status like 'ssl_version'": (["Variable_name", "Value"], [["Ssl_version", sock.version()]]),
                "select current_user()": (["CURRENT_USER()"], [["%s@%%" % user]]),
                "select @@version_comment limit 1": (["@@version_comment"], [["tlsgate lab stand-in"]]),
            }
            answer = answers.get(query.lower())
            if answer is None:
                conn.write(err_packet(1064, b"42000", "the stand-in answers only its few queries"))
                continue
            self.result_set(conn, *answer)

    @staticmethod
    def result_set(conn, columns, rows):
        conn.write(lenenc_int(len(columns)))
        for name in columns:
            n = name.encode()
            conn.write(lenenc_str(b"def") + lenenc_str(b"lab") + lenenc_str(b"t") + lenenc_str(b"t") +
                       lenenc_str(n) + lenenc_str(n) + b"\x0c" + struct.pack("<HIBHB", 45, 80, 0xfd, 0, 0) +
                       b"\x00\x00")
        conn.write(eof_packet())
        for row in rows:
            conn.write(b"".join(lenenc_str(v.encode()) for v in row))
        conn.write(eof_packet())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--account", action="append", default=[])
    args = parser.parse_args()
    Server(args).serve(args.bind, args.port)


if __name__ == "__main__":
    sys.exit(main())
