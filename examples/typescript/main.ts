// espial from TypeScript: typed options, node objects, core events and custom events.
// Two nodes on 127.0.0.1 (ports and a cluster name of their own) form a cluster, one asks
// the other for a price and gets a typed answer, then both leave.
//
//   node examples/typescript/run.js     (compiles this file with tsc, then runs it)
//
// Exits 0 once the answer came back, 1 if not within 15 s.

import crypto = require('node:crypto');
import espial = require('espial');

type Node = espial.EspialNode;

// The payloads of this application's custom events.
interface PriceRequest {
  sku: string;
}
interface PriceReply {
  sku: string;
  eur: number;
}

const cluster = `example-ts-${crypto.randomBytes(4).toString('hex')}`;
const basePort = 20000 + crypto.randomInt(12000);

function options(port: number, role: string): espial.EspialOptions {
  return {
    network: {
      port,
      address: { local: '127.0.0.1' },
      multicast_interface: '127.0.0.1',
      multicast_port: basePort + 2,
    },
    cluster,
    master_election_timeout: 300,
    metadata: { role },
  };
}

function describe(node: Node): string {
  return `${String(node.metadata['role'])} (${node.id.slice(0, 8)}, ${node.ip}:${node.port})`;
}

const shop: espial.Espial = espial(options(basePort, 'shop'));
const client = new espial.Espial(options(basePort + 1, 'client'));

for (const node of [shop, client]) {
  // Every listener's parameter is typed by the event name.
  node.on('error', (err: espial.EspialError) => fail(`${err.code}: ${err.message}`));
  node.on('new_master', (master) => console.log(`master: ${describe(master)}`));
  node.on('promotion', ({ previous_master }) => {
    console.log(`${describe(node.get_node_info())} promoted; before: ${previous_master ? describe(previous_master) : 'none'}`);
  });
  node.on('removed_node', (gone) => console.log(`left: ${describe(gone)}`));
}

const prices: Record<string, number> = { a1: 12.5, b2: 3 };
shop.join('price?');
shop.on('price?', (data: PriceRequest, from) => {
  const reply: PriceReply = { sku: data.sku, eur: prices[data.sku] ?? 0 };
  void shop.send('price', reply, from);
});

const deadline = setTimeout(() => fail('no price within 15 s'), 15_000);

function fail(message: string): void {
  console.error(`typescript example failed: ${message}`);
  process.exitCode = 1;
  clearTimeout(deadline);
  void Promise.all([shop.exit(), client.exit()]);
}

async function main(): Promise<void> {
  const shopNode = await new Promise<Node>((resolve) => {
    client.on('added_node', (node) => {
      if (node.metadata['role'] === 'shop') resolve(node);
    });
  });
  console.log(`client found ${describe(shopNode)}`);

  const reply = new Promise<PriceReply>((resolve) => client.once('price', (data: PriceReply) => resolve(data)));
  client.join('price');
  // The shop sends a reply once the client's join has reached it; ask until it answers.
  let answer: PriceReply | undefined;
  while (answer === undefined) {
    const request: PriceRequest = { sku: 'a1' };
    await client.send('price?', request, shopNode);
    answer = await Promise.race([reply, new Promise<undefined>((resolve) => setTimeout(resolve, 200))]);
  }
  console.log(`price of ${answer.sku}: ${answer.eur} EUR`);

  const stats: espial.EspialStats = client.stats();
  console.log(`client: ${stats.messages_out} messages out, ${stats.handshakes_completed} handshakes`);
  await Promise.all([shop.exit(), client.exit()]);
  clearTimeout(deadline);
  if (answer.eur !== 12.5) fail(`wrong price ${answer.eur}`);
}

main().catch((err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
