// Node 20 has no fs.globSync (added in Node 22), which @modelcontextprotocol/conformance
// imports for its `tier-check` command only. Load with `node --import ./node20-shim.mjs`:
// the `fs` the tool imports then also exports a globSync that says what is missing.
import { register } from "node:module";
import * as fs from "node:fs";

if (typeof fs.globSync !== "function") {
  register(new URL("./node20-fs-hooks.mjs", import.meta.url));
}
