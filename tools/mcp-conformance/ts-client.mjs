// The official TypeScript SDK client against a stdio MCP server (suites/test_mcp_bridge.py):
//   node ts-client.mjs COMMAND ARGS...
// Connects (initialize), lists the tools, calls health, calls an unknown tool, and prints one
// JSON object with what it saw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
const client = new Client({ name: "pytest-vmm-ts-client", version: "1.0.0" });
await client.connect(transport);
const out = { server: client.getServerVersion(), capabilities: client.getServerCapabilities() };
out.tools = (await client.listTools()).tools.map((t) => t.name);
out.health = await client.callTool({ name: "health", arguments: {} });
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknownTool = "no error";
} catch (e) {
  out.unknownTool = e.code;
}
try {
  await client.listResources();
  out.resources = "no error";
} catch (e) {
  out.resources = e.code;
}
console.log(JSON.stringify(out));
await client.close();
