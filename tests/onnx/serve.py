#!/usr/bin/env python3
"""A one-file HTTP server on 127.0.0.1 for the `models fetch` tests.

    python3 tests/onnx/serve.py FILE
Prints the port on the first line of stdout, then serves until killed:
    /model.onnx  the file, whole (Content-Length set)
    /cut.onnx    the same headers, but the connection is closed after half the bytes
    /missing     404
"""
import http.server
import sys

DATA = open(sys.argv[1], "rb").read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path not in ("/model.onnx", "/cut.onnx"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        if self.path == "/model.onnx":
            self.wfile.write(DATA)
        else:
            self.wfile.write(DATA[: len(DATA) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
