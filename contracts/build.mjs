#!/usr/bin/env node
// Compile contracts/src/*.sol with the pinned npm `solc` and write
// contracts/artifacts/<ContractName>.json for every deployable contract.
//
//   node contracts/build.mjs           rebuild artifacts
//   node contracts/build.mjs --check   verify committed artifacts are current (CI)
//
// Output is deterministic: evmVersion is pinned, and the metadata hash is
// omitted from bytecode, so source paths and comments do not change the output.

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import path from "node:path";

const PINNED_SOLC = "0.8.37";
const EVM_VERSION = "cancun";

const contractsDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.dirname(contractsDir);
const srcDir = path.join(contractsDir, "src");
const artifactsDir = path.join(contractsDir, "artifacts");

const require = createRequire(import.meta.url);
const solc = require("solc");

const toPosix = (p) => p.split(path.sep).join("/");
// Paths in messages are repo-relative, whatever the working directory.
const rel = (p) => toPosix(path.relative(repoRoot, p)) || ".";

function fail(message) {
  process.stderr.write(message.endsWith("\n") ? message : message + "\n");
  process.exit(1);
}

function compilerVersion() {
  const full = solc.version(); // e.g. "0.8.37+commit.xxxxxxxx.Emscripten.clang"
  const short = full.split("+")[0];
  if (short !== PINNED_SOLC) {
    fail(`contracts: expected solc ${PINNED_SOLC} but node_modules has ${full}; run \`npm install\`.`);
  }
  return short;
}

function readSources() {
  const files = fs
    .readdirSync(srcDir)
    .filter((f) => f.endsWith(".sol"))
    .sort();
  if (files.length === 0) fail(`contracts: no .sol files in ${rel(srcDir)}`);
  const sources = {};
  for (const f of files) {
    // Source unit names are repo-relative so `import "./X.sol"` resolves inside the input.
    const unit = toPosix(path.relative(repoRoot, path.join(srcDir, f)));
    sources[unit] = { content: fs.readFileSync(path.join(srcDir, f), "utf8") };
  }
  return sources;
}

function findImport(unitName) {
  // Everything under contracts/src is already in the input; anything else is unsupported.
  return { error: `import not found: ${unitName} (only contracts/src/*.sol may be imported)` };
}

function compile() {
  const version = compilerVersion();
  const sources = readSources();
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      metadata: { bytecodeHash: "none" },
      outputSelection: {
        "*": {
          "": ["ast"],
          "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"],
        },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));

  const diagnostics = output.errors ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics.filter((d) => d.severity !== "error")) {
    process.stderr.write(d.formattedMessage ?? `${d.severity}: ${d.message}\n`);
  }
  if (errors.length > 0) {
    for (const d of errors) process.stderr.write(d.formattedMessage ?? `error: ${d.message}\n`);
    fail(`contracts: compilation failed with ${errors.length} error(s)`);
  }

  const artifacts = new Map(); // contractName -> JSON text
  for (const sourceName of Object.keys(sources)) {
    const ast = output.sources?.[sourceName]?.ast;
    const deployable = new Set(
      (ast?.nodes ?? [])
        .filter((n) => n.nodeType === "ContractDefinition" && n.contractKind === "contract" && !n.abstract)
        .map((n) => n.name),
    );
    for (const [contractName, c] of Object.entries(output.contracts?.[sourceName] ?? {})) {
      if (!deployable.has(contractName)) continue; // interfaces, libraries, abstract contracts
      if (artifacts.has(contractName)) {
        fail(`contracts: duplicate contract name ${contractName}; artifact names must be unique`);
      }
      const artifact = {
        contractName,
        sourceName,
        compiler: `solc-${version}`,
        evmVersion: EVM_VERSION,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
      artifacts.set(contractName, JSON.stringify(artifact, null, 2) + "\n");
    }
  }
  return new Map([...artifacts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function existingArtifacts() {
  if (!fs.existsSync(artifactsDir)) return [];
  return fs.readdirSync(artifactsDir).filter((f) => f.endsWith(".json")).sort();
}

function check(artifacts) {
  const problems = [];
  for (const [name, text] of artifacts) {
    const file = path.join(artifactsDir, `${name}.json`);
    if (!fs.existsSync(file)) problems.push(`missing: ${rel(file)}`);
    else if (fs.readFileSync(file, "utf8") !== text) problems.push(`stale:   ${rel(file)}`);
  }
  for (const f of existingArtifacts()) {
    if (!artifacts.has(f.slice(0, -".json".length))) {
      problems.push(`orphan:  ${rel(path.join(artifactsDir, f))} (no matching contract in src/)`);
    }
  }
  if (problems.length > 0) {
    fail(
      "contracts: artifacts are out of date:\n" +
        problems.map((p) => `  ${p}\n`).join("") +
        "fix: run `node contracts/build.mjs` and commit contracts/artifacts/",
    );
  }
  console.log("contracts: artifacts are current");
}

function write(artifacts) {
  fs.mkdirSync(artifactsDir, { recursive: true });
  for (const f of existingArtifacts()) {
    if (!artifacts.has(f.slice(0, -".json".length))) {
      fs.rmSync(path.join(artifactsDir, f));
      console.log(`removed ${rel(path.join(artifactsDir, f))}`);
    }
  }
  for (const [name, text] of artifacts) {
    const file = path.join(artifactsDir, `${name}.json`);
    const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
    if (current === text) {
      console.log(`unchanged ${rel(file)}`);
    } else {
      fs.writeFileSync(file, text);
      console.log(`${current === null ? "wrote    " : "updated  "} ${rel(file)}`);
    }
  }
}

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== "--check");
if (unknown.length > 0) fail(`usage: node contracts/build.mjs [--check]  (unknown: ${unknown.join(" ")})`);

const artifacts = compile();
if (args.includes("--check")) check(artifacts);
else write(artifacts);
