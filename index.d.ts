// Hand-written types for espial. The addon's own generated types are in binding.d.ts and
// are not part of the public API.

/// <reference types="node" />

import { EventEmitter } from 'node:events';

declare namespace espial {
  /**
   * Options of `espial(options)` / `new Espial(options)`. Every option is optional. An
   * unknown name, a value of the wrong type or an impossible value throws a `TypeError`
   * naming the option (`code` `ERR_ESPIAL_UNKNOWN_OPTION`, `ERR_INVALID_ARG_TYPE` or
   * `ERR_INVALID_ARG_VALUE`).
   */
  interface EspialOptions {
    /** Addresses, ports and discovery. */
    network?: NetworkOptions;
    /**
     * Name of the cluster; nodes only see nodes of the same cluster, so two clusters can
     * share a LAN. 1 to 64 bytes of UTF-8. (Not in the original.)
     * @default "espial"
     */
    cluster?: string;
    /**
     * Shared secret mixed into every key exchange; nodes without it can neither join,
     * read nor impersonate, and beacons are authenticated. A string of at least 16
     * characters or a Buffer / Uint8Array of at least 16 bytes. Default: none (any node
     * that speaks the protocol may join). Present but `undefined`, `null` or empty throws
     * a TypeError (ERR_INVALID_ARG_VALUE): leave the option out to run without a key.
     * Make one with `espial keygen` (128 random bits); a passphrase is stretched with
     * Argon2id (64 MiB, 3 passes) when the node starts, but only a random key is beyond
     * offline guessing (see README, "Guessing the cluster key"). (Not in the original.)
     */
    cluster_key?: string | Uint8Array;
    /**
     * May this node become master.
     * @default true
     */
    master_eligible?: boolean;
    /**
     * Milliseconds a lone node waits before promoting itself (1 to 2147483647).
     * @default 1000
     */
    master_election_timeout?: number;
    /**
     * Milliseconds between a non-master's checks that the master is still there
     * (1 to 2147483647).
     * @default 5000
     */
    master_polling_frequency?: number;
    /**
     * Least number of master-eligible nodes, counting itself, a node must see to be master;
     * a side of a partition with fewer has no master. `0` means no quorum: a lone eligible
     * node becomes master. (Not in the original.)
     * @default 0
     */
    master_quorum?: number;
    /**
     * Milliseconds between probe rounds (a UDP liveness probe to each of the next 9
     * members); a node silent for 3 of them plus 1 s is removed (1.9 s with the default;
     * 400 gives the previous default's 2.2 s): up to 10 nodes counted from its last sign of
     * life, with more from the first time a member asks it for an answer, about 2 intervals
     * after it fell silent, whatever the cluster's size (a crashed process is removed
     * sooner, when its connection resets).
     * @default 300
     */
    send_presence_frequency?: number;
    /**
     * Plain object of JSON values shared with every node; at most 64 KiB (65536 bytes) as
     * JSON.
     * @default {}
     */
    metadata?: Record<string, unknown>;
    /**
     * Milliseconds the connection filter has to answer about one node; no answer in time
     * refuses the node. (Not in the original.)
     * @default 5000
     */
    connection_filter_timeout?: number;
    /**
     * Largest payload of a custom event `send()` accepts, in bytes (the JSON text, or the
     * Buffer's bytes): 1 to 268435456 (256 MiB). (Not in the original.)
     * @default 16777216
     */
    max_message_size?: number;
    /**
     * Bytes of received messages (and metadata) waiting for this process to take them,
     * above which the node stops reading its members' connections until half of it is
     * taken: the senders' `send()` then waits, and nothing is dropped. 65536 (64 KiB) to
     * 1073741824 (1 GiB). See the README's Limits. (Not in the original.)
     * @default 4194304
     */
    max_receive_buffer?: number;
    /**
     * Bytes of custom events sent to one node and not yet acknowledged by it (kept to be
     * sent again if the connection breaks), above which `send()` waits until it
     * acknowledges them (and goes on below 3/4 of it). 65536 (64 KiB) to 1073741824 (1 GiB).
     * See the README's Limits. (Not in the original.)
     * @default 16777216
     */
    max_unacked_bytes?: number;
    /** Default timeout of `request()` and `query()`, in ms. (Not in the original.) @default 10000 */
    request_timeout?: number;
    /**
     * Requests of this node awaiting replies, all targets; past it `request()` waits for
     * room, as `send()` does under backpressure. 1 to 65536. @default 1024
     */
    max_requests?: number;
    /** Requests of this node awaiting replies from one target; past it `request()` waits. 1 to 4096. @default 256 */
    max_requests_per_target?: number;
    /** Handlers of one name running at once on this node; the rest wait their turn. 1 to 65536. @default 64 */
    max_handler_concurrency?: number;
  }

  /** Where `request()` goes: a node object or id, or the master. */
  type RequestTarget = EspialNode | string | 'master';

  /** The options of `request()` and `query()`. */
  interface RequestOptions {
    /** In ms, waiting for room included. @default the `request_timeout` option */
    timeout?: number;
    /** Aborts: the Promise rejects with an `AbortError` (code `ABORT_ERR`, `cause` the reason). */
    signal?: AbortSignal;
  }

  /** One node's answer to `query()`. */
  type QueryResult<T> = { from: EspialNode; value: T; error?: undefined } | { from: EspialNode; error: EspialError; value?: undefined };

  /** A failed request: `code` says why; `ERR_ESPIAL_REMOTE` carries the handler's code and message. */
  interface RequestError extends EspialError {
    remote?: { code: string; message: string };
  }

  /** The `network` options. */
  interface NetworkOptions {
    /**
     * TCP port of this node (1 to 65535); its liveness probes use the UDP port of the same
     * number. Manual discovery's subnet scan looks for other nodes on this same port.
     * @default 27272
     */
    port?: number;
    /** Addresses of this node. */
    address?: {
      /**
       * Unicast IPv4 or IPv6 address this node listens on and is reached at (not link-local
       * `fe80::/10`), or `"::"` to listen on every address, IPv4 and IPv6 (dual stack), or
       * `"0.0.0.0"` on every IPv4 one. Default: the first non-internal IPv4 address of the
       * machine, else its first non-internal IPv6 one that is not link-local, else `"127.0.0.1"`.
       */
      local?: string;
    };
    /**
     * `"ip:port"` (`"[ipv6]:port"`) other nodes should dial when it is not
     * `address.local` and `port` (NAT, a container's port mapping). Carried in introductions
     * and member lists, seen by others as `advertised`. An IP address, not a name. (Not in
     * the original.)
     */
    advertise?: string;
    /** Host name reported to other nodes (1 to 255 bytes). Default: `os.hostname()`. */
    host_name?: string;
    /**
     * Dotted IPv4 addresses whose /24 manual discovery scans, on `network.port`, when
     * `multicast` is `false`; IPv4 only. Default: `[network.address.local]` if it is IPv4,
     * else `[]`.
     */
    subnets?: string[];
    /**
     * Discover other nodes by multicast; `false` means manual discovery (`peers` and
     * `subnets`).
     * @default true
     */
    multicast?: boolean;
    /**
     * Multicast group of the discovery beacons: IPv4 in 224.0.0.0/4, or IPv6 in ff00::/8.
     * Default: `"239.255.27.27"`, or `"ff02::27:27"` when `address.local` is an IPv6
     * address. (Not in the original.)
     */
    multicast_address?: string;
    /**
     * UDP port of the discovery beacons. (Not in the original.)
     * @default 27272
     */
    multicast_port?: number;
    /**
     * Interface beacons use: for an IPv4 group one of its IPv4 addresses (default
     * `network.address.local`, or the first non-internal IPv4 address when that is `"::"`);
     * for an IPv6 group its name (`"eth0"`) or index (default: the interface holding
     * `network.address.local`). (Not in the original.)
     */
    multicast_interface?: string | number;
    /**
     * Time-to-live of the beacons, 0 to 255; 1 keeps them on the local network. (Not in the
     * original.)
     * @default 1
     */
    multicast_ttl?: number;
    /**
     * Seed nodes to dial directly, as `"host:port"` strings (host an IPv4 address or a name),
     * `"[ipv6]:port"`, or an IP address alone (`"fd00::5"`), on this node's own `port`; with
     * multicast or without. A name is looked up again every `peers_resolve_interval`
     * ms and every address it has (A and AAAA records, up to 64) is a seed, so a Kubernetes
     * headless Service name (`"my-app-headless:27272"`) finds every pod. (Not in the original.)
     * @default []
     */
    peers?: string[];
    /**
     * How often names in `peers` are looked up again, in ms (at least 100); a name that
     * does not resolve is tried again less and less often, up to every 30 s. (Not in the
     * original.)
     * @default 5000
     */
    peers_resolve_interval?: number;
  }

  /**
   * A node as every event and accessor hands it out: a plain object with no key material.
   * Another node's object is shared, and best treated as read-only: its `added_node` /
   * `updated_node` object, its entry in `get_nodes()` and the `from` of its messages are one
   * object until its next `updated_node`. The other events and accessors hand out fresh ones.
   */
  interface EspialNode {
    /** The node's id, a UUID; new each time a node starts. */
    id: string;
    /** The host name it reports (`network.host_name`). */
    host_name: string;
    /** Its IP address (IPv4 or IPv6): for other nodes, the address seen on their connection. */
    ip: string;
    /** Its TCP port. */
    port: number;
    /** Where it asks to be dialed (`network.advertise`, `"ip:port"`), only if it set one: a claim. */
    advertised?: string;
    /** Its metadata, as last set (`metadata` option or `set_metadata()`). */
    metadata: Record<string, unknown>;
  }

  /**
   * A node not admitted by both ends: what its introduction said, with the address seen on
   * its connection. Its metadata crosses only once both ends have admitted each other, so
   * it has none (see "Connection filter" in the README).
   */
  interface EspialCandidate {
    /** The node's id. */
    id: string;
    /** The host name it claims (`network.host_name`): a claim, checked by nothing. */
    host_name: string;
    /** The address seen on its connection, not a claim: the field to enforce on. */
    ip: string;
    /** The TCP port it says it listens on. */
    port: number;
    /** Where it asks to be dialed (`network.advertise`), only if it set one: a claim. */
    advertised?: string;
  }

  /**
   * What the connection filter is asked about: the node as its introduction describes it,
   * plus its host name as `host`. No `metadata`: it crosses only after admission.
   */
  interface ConnectionFilterData extends EspialCandidate {
    /** The same as `host_name`, under the original's name. */
    host: string;
  }

  /**
   * Decides whether `data`'s node may be a member together with this one. Admits it only by
   * calling `cb(true)`, returning `true`, or returning a Promise that resolves to `true`;
   * `false` refuses. The first answer counts. Throwing, a rejected Promise, or no answer
   * within `connection_filter_timeout` refuses.
   */
  type ConnectionFilter = (
    data: ConnectionFilterData,
    cb: (accept: boolean) => void,
  ) => boolean | PromiseLike<boolean> | void | PromiseLike<void>;

  /**
   * The error codes espial sets on its errors: Node's own two for an argument of the wrong
   * type or value, and espial's, each defined once in the native core (a test compares this
   * list with the addon's).
   */
  type EspialErrorCode =
    | 'ERR_INVALID_ARG_TYPE'
    | 'ERR_INVALID_ARG_VALUE'
    | 'ERR_ESPIAL_UNKNOWN_OPTION'
    | 'ERR_ESPIAL_NOT_ELIGIBLE'
    | 'ERR_ESPIAL_RESERVED_EVENT'
    | 'ERR_ESPIAL_INVALID_EVENT'
    | 'ERR_ESPIAL_TOO_MANY_EVENTS'
    | 'ERR_ESPIAL_UNKNOWN_TARGET'
    | 'ERR_ESPIAL_MESSAGE_TOO_LARGE'
    | 'ERR_ESPIAL_NOT_RUNNING'
    | 'ERR_ESPIAL_INVALID_PAYLOAD'
    | 'ERR_ESPIAL_BIND'
    | 'ERR_ESPIAL_MULTICAST'
    | 'ERR_ESPIAL_SEED'
    | 'ERR_ESPIAL_FILTER'
    | 'ERR_ESPIAL_TIMEOUT'
    | 'ERR_ESPIAL_NO_HANDLER'
    | 'ERR_ESPIAL_REMOTE'
    | 'ERR_ESPIAL_TARGET_LEFT'
    | 'ERR_ESPIAL_BUSY';

  /** The error of an `error` event, or of a rejected `send()`; `code` is stable. */
  interface EspialError extends Error {
    code: EspialErrorCode;
    /** ERR_ESPIAL_FILTER: the node the connection filter was judging (it was refused). */
    node?: EspialCandidate;
    /** ERR_ESPIAL_FILTER: what the filter threw or rejected with (none for a timeout). */
    cause?: unknown;
  }

  /** The argument of `promotion`. */
  interface Promotion {
    /** The master before this node, or `undefined` if there was none. */
    previous_master: EspialNode | undefined;
  }

  /**
   * Counters of this node since it started (all zero before it starts), from
   * `espial.stats()`.
   */
  interface EspialStats {
    /** Custom event messages sent, one per target. */
    messages_out: number;
    /** Custom event messages received and emitted. */
    messages_in: number;
    /** Bytes written to connections, all protocol traffic included. */
    bytes_out: number;
    /** Bytes read from connections, all protocol traffic included. */
    bytes_in: number;
    /** Handshakes that completed: encrypted links set up. */
    handshakes_completed: number;
    /** Handshakes that failed (a wrong `cluster_key`, a different cluster, garbage, …). */
    handshakes_failed: number;
    /** Frames refused after the handshake (failed to decrypt, replayed, out of order, malformed). */
    frames_rejected: number;
    /** Incoming connections refused (e.g. over the connection limit). */
    connections_refused: number;
    /** Nodes this node's connection filter refused. */
    nodes_rejected: number;
    /** Discovery beacons sent. */
    beacons_sent: number;
    /** Beacons received and ignored (this node's own, another cluster's, unauthenticated, malformed). */
    beacons_ignored: number;
    /**
     * Beacons of this cluster not acted on: sent from another address than the one they
     * name, or, in a keyed cluster, stale (time more than 60 s from this node's clock) or
     * replayed (a counter already seen from that sender).
     */
    beacons_refused: number;
    /**
     * Messages from members or joining nodes that broke a protocol rule (a statement about
     * another node, metadata that is not a JSON object, a custom event that is not valid
     * JSON): refused, never acted on.
     */
    messages_refused: number;
    /**
     * Nodes refused because the connection filter failed: it threw, rejected, answered
     * something that is not a boolean, or did not answer within connection_filter_timeout.
     */
    filter_errors: number;
    /**
     * Peers refused for another `cluster_key` (or none where this node has one, or the other
     * way round): handshakes that failed key confirmation (also in `handshakes_failed`) and
     * beacons of this cluster under another key (also in `beacons_ignored`).
     */
    key_mismatches: number;
    /**
     * Dials to addresses learnt from beacons and member lists put off because the dial
     * budget (16 at once, then 8 per second) was spent; each is dialed when the budget
     * allows, if still wanted then.
     */
    dials_skipped: number;
    /**
     * Dials meant for a node (an id learned from a beacon or a member list) that reached a
     * peer proving another id in the handshake: failed, nothing added (also in
     * `handshakes_failed`).
     */
    identity_mismatches: number;
    /**
     * Peers refused for speaking another espial protocol version: handshakes (also in
     * `handshakes_failed`) and beacons (also in `beacons_ignored`); each logged under
     * `DEBUG=espial` naming both versions.
     */
    version_mismatches: number;
    /** Custom events sent again on a member's new connection (its old one broke before it acknowledged them). */
    messages_resent: number;
    /** Custom events received again after a reconnection and dropped: delivered once already. */
    duplicates_dropped: number;
    /** Custom events reported in `undelivered`. */
    messages_undelivered: number;
    /** Liveness probe datagrams (UDP) sent: pings, answers, relay requests, relayed probes. */
    probes_sent: number;
    /** Authentic liveness probe datagrams received. */
    probes_received: number;
    /**
     * Probe datagrams dropped: malformed, from a sender that is no member or an address no
     * member has, failing authentication, replayed, or a relay nobody asked for.
     */
    probes_rejected: number;
    /** Probes this node passed on between two other members (indirect probing). */
    probes_relayed: number;
    /** Relay requests sent: a member silent past its probe round probed through others. */
    indirect_probes: number;
    /** Pings asking a silent member for an answer, sent to it directly (relayed asks are `indirect_probes`). */
    answers_asked: number;
    /** Times this node's own process was found to have been paused (a timer fired far too late). */
    pauses_noticed: number;
    /** Requests sent (one per target) and received for a handler of this node. */
    requests_out: number;
    requests_in: number;
    /** Replies dropped for coming from the target after their request timed out, was aborted or answered. */
    replies_late: number;
    /** Replies dropped for answering no request of this node to their sender (ended or not). */
    replies_refused: number;
    /** Lookups of `network.peers` names that failed (no answer, or no address). */
    seed_lookups_failed: number;
  }

  /**
   * Who a custom event goes to: a node object, a node id, or an array of either; `null` or
   * omitted means every other node that joined the event.
   */
  type Targets = EspialNode | string | ReadonlyArray<EspialNode | string> | null;

  /**
   * A listener of a custom event: the data sent (a Buffer if a Buffer was sent) and the
   * sender's node object (shared, see `EspialNode`).
   */
  type CustomEventListener = (data: any, from: EspialNode) => void;

  /** espial's own events and the arguments their listeners get. */
  /** A custom event in `undelivered`: its name and its data, as given to `send()`. */
  interface UndeliveredEvent {
    event: string;
    data: unknown;
  }

  interface EspialEvents {
    /** This node has started. */
    listening: [];
    /**
     * `node` was removed (its `removed_node` comes first) while custom events sent to it
     * were not yet acknowledged by it: each may or may not have reached it, and none is
     * sent again. In the order sent. See the README's "Delivery".
     */
    undelivered: [node: EspialNode, events: UndeliveredEvent[]];
    /** Another node joined the cluster. */
    added_node: [node: EspialNode];
    /** Another node changed its metadata; `node` is its new object. */
    updated_node: [node: EspialNode];
    /** Another node left the cluster: it exited, crashed, or stopped answering heartbeats. */
    removed_node: [node: EspialNode];
    /** `node` admitted this node, and this node `node`: the pair is formed (`added_node` follows). */
    node_accepted: [node: EspialNode];
    /**
     * `node`'s connection filter refused this node (once per try; tries back off from 2 s,
     * doubling, up to 60 s). The refusing node emits nothing about the node it refused.
     */
    node_rejected: [node: EspialCandidate];
    /**
     * `node` became master (possibly this node). A departed master's `removed_node` comes
     * first.
     */
    new_master: [node: EspialNode];
    /** This node became master. */
    promotion: [promotion: Promotion];
    /** This node stopped being master; the argument is its successor, if there is one. */
    demotion: [new_master: EspialNode | undefined];
    /** Something failed, e.g. the node could not start. */
    error: [err: EspialError];
  }

  /** The name of one of espial's own events. */
  type EspialEventName = keyof EspialEvents;

  /**
   * A custom event name: any string but espial's own event names, so that a listener of a
   * core event with the wrong parameters is an error instead of a custom event listener.
   */
  type CustomEventName<E extends string> = E extends EspialEventName | 'newListener' | 'removeListener' ? never : E;

  /** A listener of EventEmitter's own `newListener` and `removeListener` events. */
  type EmitterListener = (event: string | symbol, listener: (...args: any[]) => void) => void;

  /** A listener of espial's own event `K`. */
  type EspialListener<K extends EspialEventName> = (...args: EspialEvents[K]) => void;

  interface Espial extends EventEmitter {
    /** The version of the espial package. */
    readonly version: string;
    /** This node's own object. */
    get_node_info(): EspialNode;
    /**
     * The other nodes of the cluster, as announced by `added_node`, `updated_node` and
     * `removed_node`; `[]` once `exit()` has completed. A new array of the shared node
     * objects (see `EspialNode`).
     */
    get_nodes(): EspialNode[];
    /**
     * Sets the filter that admits nodes, or removes it with `null`. It is asked on each
     * member about each newcomer and on the newcomer about each member. Throws a TypeError
     * for anything but a function or `null`.
     */
    connection_filter(fn: ConnectionFilter | null): void;
    /**
     * Replaces this node's metadata; every member emits `updated_node`. Throws a TypeError
     * naming `metadata`, as the option does, if it is not a plain object of JSON values of
     * at most 64 KiB as JSON.
     */
    set_metadata(metadata: Record<string, unknown>): void;
    /**
     * Leaves the cluster gracefully; afterwards the process can end by itself. Calling it
     * again returns the same promise.
     */
    exit(callback?: (err: Error | null) => void): Promise<void>;
    /** Counters since this node started: messages, bytes, handshakes, rejections, beacons. */
    stats(): EspialStats;

    /**
     * The master's object (this node's own if it is the master), or `undefined` while the
     * cluster has no master; agrees with the `new_master` events already emitted.
     */
    get_master(): EspialNode | undefined;
    /** Whether this node is the master. */
    is_master(): boolean;
    /**
     * Makes this node the master of its cluster, with a new term: `new_master` follows on
     * every node, `demotion` on the old master and `promotion` here. Throws an Error with
     * code `ERR_ESPIAL_NOT_ELIGIBLE` if `master_eligible` is false. Changes nothing on the
     * master itself, or on a node that does not see its `master_quorum`.
     */
    promote(): void;

    /**
     * Starts emitting the custom event `event` as `(data, from)`; other nodes send it here
     * from now on. `event` is 1 to 255 bytes of UTF-8 (else a TypeError); one of espial's
     * own event names throws an Error with code `ERR_ESPIAL_RESERVED_EVENT`. Past 4096
     * events, or 64 KiB of their names in all, it throws an Error with code
     * `ERR_ESPIAL_TOO_MANY_EVENTS` and the event is not joined.
     */
    join(event: string): void;
    /** Stops emitting the custom event `event`; other nodes stop sending it here. */
    leave(event: string): void;
    /**
     * Sends the custom event `event` to every other node that joined it, or to `targets`
     * (node objects or ids). `data` is any JSON value, or a Buffer / Uint8Array, which arrives
     * as a Buffer. Settles, and calls `callback`, once the message is handed over to every
     * target's connection (at the end of the current turn of the event loop); waits while a
     * connection is backlogged. Sends settle in the order they were made. Rejects with code
     * `ERR_ESPIAL_UNKNOWN_TARGET` (a target is not a member),
     * `ERR_ESPIAL_MESSAGE_TOO_LARGE` (over `max_message_size`) or `ERR_ESPIAL_NOT_RUNNING`
     * (after `exit()`). Bad arguments, and espial's own event names, throw at once.
     */
    send(event: string, data: unknown, callback?: (err: Error | null) => void): Promise<void>;
    send(
      event: string,
      data: unknown,
      targets?: Targets,
      callback?: (err: Error | null) => void,
    ): Promise<void>;

    /**
     * Serves requests named `name`: `fn(data, from)` returns the reply (a JSON value or a
     * Buffer) or a Promise of it; a throw or rejection reaches the asker as
     * `ERR_ESPIAL_REMOTE` with its message and code, never its stack.
     */
    handle<T = unknown, D = any>(name: string, fn: (data: D, from: EspialNode) => T | Promise<T>): void;
    /** Stops serving `name`. */
    unhandle(name: string): void;
    /**
     * Asks one node's handler `name`; resolves with its reply. `target` omitted: the node
     * serving `name` with the fewest of this node's requests in flight, ties round-robin.
     * Rejects with `ERR_ESPIAL_TIMEOUT`, `ERR_ESPIAL_NO_HANDLER`, `ERR_ESPIAL_REMOTE`,
     * `ERR_ESPIAL_TARGET_LEFT`, `ERR_ESPIAL_BUSY`, `ERR_ESPIAL_MESSAGE_TOO_LARGE`,
     * `ERR_ESPIAL_UNKNOWN_TARGET`, or an `AbortError`.
     */
    request<T = unknown>(name: string, data: unknown, target?: RequestTarget | null, options?: RequestOptions): Promise<T>;
    request<T = unknown>(name: string, data: unknown, options: RequestOptions): Promise<T>;
    /**
     * Asks every node serving `name`; resolves at the deadline, or once every one answered.
     */
    query<T = unknown>(name: string, data: unknown, options?: RequestOptions): Promise<Array<QueryResult<T>>>;

    /** This node has started. */
    on(event: 'listening', listener: () => void): this;
    /** Another node joined the cluster. */
    on(event: 'added_node', listener: (node: EspialNode) => void): this;
    /**
     * `node` admitted this node. Each side of a new pair admits the other: a joining node
     * hears it from every member, and each member from the newcomer.
     */
    on(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    /** This node was refused by `node`'s connection filter; it joins no cluster through it. */
    on(event: 'node_rejected', listener: (node: EspialCandidate) => void): this;
    /** Another node changed its metadata; `node` is its new object. */
    on(event: 'updated_node', listener: (node: EspialNode) => void): this;
    /** Another node left the cluster, crashed, or stopped answering heartbeats. */
    on(event: 'removed_node', listener: (node: EspialNode) => void): this;
    /** Custom events sent to a removed node that it never acknowledged (see `EspialEvents`). */
    on(event: 'undelivered', listener: (node: EspialNode, events: UndeliveredEvent[]) => void): this;
    /** Something failed, e.g. the node could not start. */
    on(event: 'error', listener: (err: EspialError) => void): this;
    /**
     * `node` became master (it may be this node). Not emitted when the cluster is left with
     * no master; `get_master()` is `undefined` then.
     */
    on(event: 'new_master', listener: (node: EspialNode) => void): this;
    /** This node became master; `previous_master` is the one before it, if any. */
    on(event: 'promotion', listener: (promotion: Promotion) => void): this;
    /** This node stopped being master; `new_master` is its successor, if there is one. */
    on(event: 'demotion', listener: (new_master: EspialNode | undefined) => void): this;
    /** A custom event this node joined: the data sent and the sender. */
    /** EventEmitter's own events. */
    on(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    on<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    on(event: symbol, listener: (...args: any[]) => void): this;

    /** This node has started. */
    once(event: 'listening', listener: () => void): this;
    /** Another node joined the cluster. */
    once(event: 'added_node', listener: (node: EspialNode) => void): this;
    /** `node` admitted this node. */
    once(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    /** This node was refused by `node`'s connection filter. */
    once(event: 'node_rejected', listener: (node: EspialCandidate) => void): this;
    /** Another node changed its metadata; `node` is its new object. */
    once(event: 'updated_node', listener: (node: EspialNode) => void): this;
    /** Another node left the cluster, crashed, or stopped answering heartbeats. */
    once(event: 'removed_node', listener: (node: EspialNode) => void): this;
    /** Custom events sent to a removed node that it never acknowledged (see `EspialEvents`). */
    once(event: 'undelivered', listener: (node: EspialNode, events: UndeliveredEvent[]) => void): this;
    /** Something failed, e.g. the node could not start. */
    once(event: 'error', listener: (err: EspialError) => void): this;
    /** `node` became master (it may be this node). */
    once(event: 'new_master', listener: (node: EspialNode) => void): this;
    /** This node became master; `previous_master` is the one before it, if any. */
    once(event: 'promotion', listener: (promotion: Promotion) => void): this;
    /** This node stopped being master; `new_master` is its successor, if there is one. */
    once(event: 'demotion', listener: (new_master: EspialNode | undefined) => void): this;
    /** A custom event this node joined: the data sent and the sender. */
    /** EventEmitter's own events. */
    once(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    once<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    once(event: symbol, listener: (...args: any[]) => void): this;

    addListener<K extends EspialEventName>(event: K, listener: EspialListener<K>): this;
    /** EventEmitter's own events. */
    addListener(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    addListener<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    addListener(event: symbol, listener: (...args: any[]) => void): this;

    prependListener<K extends EspialEventName>(event: K, listener: EspialListener<K>): this;
    /** EventEmitter's own events. */
    prependListener(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    prependListener<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    prependListener(event: symbol, listener: (...args: any[]) => void): this;

    prependOnceListener<K extends EspialEventName>(event: K, listener: EspialListener<K>): this;
    /** EventEmitter's own events. */
    prependOnceListener(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    prependOnceListener<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    prependOnceListener(event: symbol, listener: (...args: any[]) => void): this;

    off<K extends EspialEventName>(event: K, listener: EspialListener<K>): this;
    /** EventEmitter's own events. */
    off(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    off<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    off(event: symbol, listener: (...args: any[]) => void): this;

    removeListener<K extends EspialEventName>(event: K, listener: EspialListener<K>): this;
    /** EventEmitter's own events. */
    removeListener(event: 'newListener' | 'removeListener', listener: EmitterListener): this;
    removeListener<E extends string>(event: CustomEventName<E>, listener: CustomEventListener): this;
    removeListener(event: symbol, listener: (...args: any[]) => void): this;
  }

  /** The module: call it like the original factory, or use it as a class with `new`. */
  interface EspialConstructor {
    /**
     * Creates a node, which starts on the next tick; throws a TypeError naming the option if
     * an option is wrong.
     */
    (options?: EspialOptions | null): Espial;
    /**
     * Creates a node, which starts on the next tick; throws a TypeError naming the option if
     * an option is wrong.
     */
    new (options?: EspialOptions | null): Espial;
    readonly prototype: Espial;
    /** The same as the module itself, for `const { Espial } = require('espial')`. */
    readonly Espial: EspialConstructor;
  }
}

declare const espial: espial.EspialConstructor;

export = espial;
