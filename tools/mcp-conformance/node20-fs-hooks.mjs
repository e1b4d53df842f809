// Resolve hook for node20-shim.mjs: `fs`/`node:fs` imported from node_modules resolves to a
// module that re-exports node:fs plus a globSync stub.
const STUB = "data:text/javascript," + encodeURIComponent(
  'export * from "node:fs"; import fs from "node:fs"; export default fs;' +
  'export function globSync() { throw new Error("fs.globSync needs Node 22 (conformance tier-check only)"); }');

export async function resolve(specifier, context, next) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL?.includes("/node_modules/")) {
    return { url: STUB, shortCircuit: true };
  }
  return next(specifier, context);
}
