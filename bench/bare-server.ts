// The ceiling's upstream: a bare Node HTTP server that reads the body and answers 202 with a
// small JSON body, with the gateways' keep-alive settings. Port from argv.
import http from "node:http";

const ACCEPTED = JSON.stringify({ status: "queued" });
const server = http.createServer((req, res) => {
	req.resume();
	req.on("end", () => {
		res.writeHead(202, { "content-type": "application/json; charset=utf-8" });
		res.end(ACCEPTED);
	});
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.send?.("listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
