// Parse LogQL expressions with Grafana's own LogQL grammar (@grafana/lezer-logql, the parser of Grafana's Loki
// query editor) and report where each one does not parse.
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON array of the same length, each item
// null (the expression parses) or {"from": <offset>, "to": <offset>, "near": "<text>", "message": "<sentence>"}
// for its first error node. Lezer parsers recover from errors instead of stopping, so an expression is valid when
// its tree has no error node and its top node is the grammar's LogQL rule with one expression under it.
// tests/manifests/test_logs.py runs it; the package is installed by `make manifests` (npm ci, see the Makefile).
"use strict";

const { parser } = require("@grafana/lezer-logql");

function firstError(expr) {
  const tree = parser.parse(expr);
  let found = null;
  tree.iterate({
    enter(node) {
      if (found) return false;
      if (node.type.isError) {
        found = { from: node.from, to: node.to };
        return false;
      }
      return undefined;
    },
  });
  if (!found && tree.topNode.getChildren("Expr").length !== 1) {
    found = { from: 0, to: expr.length };
  }
  if (!found) return null;
  const near = expr.slice(found.from, found.from + 20);
  const where = found.from >= expr.length ? "at the end" : `at offset ${found.from} (near ${JSON.stringify(near)})`;
  return { ...found, near, message: `does not parse as LogQL ${where}` };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const exprs = JSON.parse(input);
  process.stdout.write(`${JSON.stringify(exprs.map(firstError))}\n`);
});
