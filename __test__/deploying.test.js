'use strict';

// The README's Kubernetes manifest and Docker Compose file are valid YAML and say what the
// README says: a headless Service whose name, with its port, is the Deployment's seed, and
// the TCP and UDP ports espial uses open on both. netns/dns.test.js runs nodes seeded with
// that same name against a real DNS server.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { kubernetesManifest, composeFile, deployingSection } = require('./deploying.js');
const { normalizeOptions } = require('../lib/options.js');

const PORT = 27272; // network.port's default, which the manifest keeps

test('the Kubernetes manifest: a headless Service and a Deployment seeded with its name', () => {
  const { documents, service, deployment, container, seed } = kubernetesManifest();
  assert.equal(documents.length, 2, 'two documents: the Service and the Deployment');
  assert.ok(service, 'a Service');
  assert.ok(deployment, 'a Deployment');
  assert.equal(service.apiVersion, 'v1');
  assert.equal(deployment.apiVersion, 'apps/v1');

  // Headless, and listing pods before they are Ready (the first ones must find each other).
  assert.equal(service.spec.clusterIP, 'None');
  assert.equal(service.spec.publishNotReadyAddresses, true);

  // The Service selects the Deployment's pods.
  const labels = deployment.spec.template.metadata.labels;
  assert.deepEqual(deployment.spec.selector.matchLabels, labels);
  for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v, `pod label ${k}`);

  // The seed is the Service's name and espial's port, and the option accepts it as it is.
  assert.equal(seed, `${service.metadata.name}:${PORT}`);
  assert.deepEqual(normalizeOptions({ network: { multicast: false, peers: seed.split(',') } }).peers, [seed]);

  // TCP for connections, UDP on the same number for the liveness probes: on both.
  const ports = (list, key) => list.map((p) => `${p[key]}/${p.protocol}`).sort();
  assert.deepEqual(ports(service.spec.ports, 'port'), [`${PORT}/TCP`, `${PORT}/UDP`]);
  assert.deepEqual(ports(container.ports, 'containerPort'), [`${PORT}/TCP`, `${PORT}/UDP`]);

  // The pod's own address, and the key from a Secret, never written in the manifest.
  const env = Object.fromEntries(container.env.map((e) => [e.name, e]));
  assert.equal(env.POD_IP.valueFrom.fieldRef.fieldPath, 'status.podIP');
  assert.ok(env.ESPIAL_CLUSTER_KEY.valueFrom.secretKeyRef, 'the key comes from a Secret');
});

test('the Docker Compose file: one service seeded with its own name', () => {
  const compose = composeFile();
  const names = Object.keys(compose.services);
  assert.equal(names.length, 1);
  const [name] = names;
  const service = compose.services[name];
  assert.equal(service.environment.ESPIAL_PEERS, `${name}:${PORT}`);
  assert.ok(service.deploy.replicas > 1);
  assert.match(service.environment.ESPIAL_CLUSTER_KEY, /^\$\{ESPIAL_CLUSTER_KEY/, 'the key from the environment');
});

test('the application code of the section is valid options with multicast off', () => {
  const section = deployingSection();
  const code = section.match(/```js\n([\s\S]*?)```/)[1];
  // Runs it with espial replaced by normalizeOptions, in the environment the manifest gives.
  const env = { ESPIAL_PEERS: 'my-app-headless:27272', POD_IP: '10.1.2.3', ESPIAL_CLUSTER_KEY: 'k'.repeat(32) };
  const run = new Function('require', 'process', `${code}\nreturn node;`);
  const native = run((m) => (m === 'espial' ? normalizeOptions : require(m)), { env });
  assert.equal(native.multicast, false);
  assert.deepEqual(native.subnets, []);
  assert.deepEqual(native.peers, ['my-app-headless:27272']);
  assert.equal(native.address, '10.1.2.3');
  // Compose sets no POD_IP: the default address.
  const compose = run((m) => (m === 'espial' ? normalizeOptions : require(m)), { env: { ...env, POD_IP: undefined } });
  assert.ok(compose.address);
});
