'use strict';

// The README's "Deploying" section as data: its Kubernetes manifest and Docker Compose file,
// parsed as YAML. Used by deploying.test.js (is the manifest what it claims?) and by
// netns/dns.test.js (nodes seeded with the manifest's own seed name form a cluster).

const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

const README = path.join(__dirname, '..', 'README.md');

function deployingSection() {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf('\n## Deploying\n');
  if (start < 0) throw new Error('README.md has no "## Deploying" section');
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end < 0 ? undefined : end);
}

/** Every ```yaml block of the section, parsed (every document of each), strictly. */
function yamlBlocks() {
  const blocks = [...deployingSection().matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.map((source) =>
    YAML.parseAllDocuments(source, { prettyErrors: true, uniqueKeys: true }).map((doc) => {
      if (doc.errors.length > 0) throw doc.errors[0];
      return doc.toJS();
    }),
  );
}

/**
 * The Kubernetes manifest: { service, deployment, container, seed } where `seed` is the
 * container's ESPIAL_PEERS value.
 */
function kubernetesManifest() {
  const block = yamlBlocks().find((docs) => docs.some((d) => d && d.apiVersion));
  if (!block) throw new Error('no Kubernetes manifest (a YAML block with apiVersion) in README "Deploying"');
  const service = block.find((d) => d.kind === 'Service');
  const deployment = block.find((d) => d.kind === 'Deployment');
  const container = deployment?.spec?.template?.spec?.containers?.[0];
  const seed = container?.env?.find((e) => e.name === 'ESPIAL_PEERS')?.value;
  return { documents: block, service, deployment, container, seed };
}

/** The Docker Compose file: its parsed object. */
function composeFile() {
  const block = yamlBlocks().find((docs) => docs.length === 1 && docs[0] && docs[0].services);
  if (!block) throw new Error('no Docker Compose file (a YAML block with services) in README "Deploying"');
  return block[0];
}

module.exports = { deployingSection, yamlBlocks, kubernetesManifest, composeFile };
