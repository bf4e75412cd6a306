// Hand-written types for espial. The addon's own generated types are in binding.d.ts and
// are not part of the public API.

/// <reference types="node" />

import { EventEmitter } from 'node:events';

declare namespace espial {
  /** Options of `espial(options)`. Every option is optional; unknown names are refused. */
  interface EspialOptions {
    network?: NetworkOptions;
    /**
     * Name of the cluster; nodes only see nodes of the same cluster, so two clusters can
     * share a LAN. 1 to 64 bytes of UTF-8. Default `"espial"`. (Not in the original.)
     */
    cluster?: string;
    /**
     * Shared secret mixed into every key exchange; nodes without it can neither join,
     * read nor impersonate, and beacons are authenticated. A string of at least 16
     * characters or a Buffer of at least 16 bytes. Default: none. (Not in the original.)
     */
    cluster_key?: string | Uint8Array;
    /** May this node become master. Default `true`. */
    master_eligible?: boolean;
    /** Milliseconds a lone node waits before promoting itself. Default `1000`. */
    master_election_timeout?: number;
    /** Milliseconds between a non-master's checks that the master is still there. Default `5000`. */
    master_polling_frequency?: number;
    /**
     * Least number of master-eligible nodes, counting itself, a node must see to be master;
     * a side of a partition with fewer has no master. `0` (the default) means no quorum: a
     * lone eligible node becomes master. (Not in the original.)
     */
    master_quorum?: number;
    /**
     * Milliseconds between heartbeats; a node silent for 3 heartbeats plus 1 s is removed
     * (a crashed process is removed sooner, when its connection resets). Default `5000`.
     */
    send_presence_frequency?: number;
    /**
     * Plain object of JSON values shared with every node; at most 64 KiB (65536 bytes) as
     * JSON. Default `{}`.
     */
    metadata?: Record<string, unknown>;
    /**
     * Milliseconds the connection filter has to answer about one node; no answer in time
     * refuses the node. Default `5000`. (Not in the original.)
     */
    connection_filter_timeout?: number;
    /**
     * Largest payload of a custom event `send()` accepts, in bytes (the JSON text, or the
     * Buffer's bytes): 1 to 268435456 (256 MiB). Default `16777216` (16 MiB). (Not in the
     * original.)
     */
    max_message_size?: number;
  }

  interface NetworkOptions {
    /** TCP port of this node. Default `27272`. */
    port?: number;
    address?: {
      /** Dotted IPv4 address this node is reached at. Default: the first non-internal IPv4 address, else `127.0.0.1`. */
      local?: string;
    };
    /** Host name reported to other nodes. Default `os.hostname()`. */
    host_name?: string;
    /**
     * Dotted IPv4 addresses whose /24 manual discovery scans, on `network.port`, when
     * `multicast` is `false`. Default `[network.address.local]`.
     */
    subnets?: string[];
    /** Discover other nodes by multicast; `false` means manual discovery. Default `true`. */
    multicast?: boolean;
    /** Multicast group of the discovery beacons, in 224.0.0.0/4. Default `"239.255.27.27"`. (Not in the original.) */
    multicast_address?: string;
    /** UDP port of the discovery beacons. Default `27272`. (Not in the original.) */
    multicast_port?: number;
    /** IPv4 address of the interface beacons use. Default `network.address.local`. (Not in the original.) */
    multicast_interface?: string;
    /** Time-to-live of the beacons, 0 to 255; 1 keeps them on the local network. Default `1`. (Not in the original.) */
    multicast_ttl?: number;
    /**
     * Seed nodes to dial directly, as `"host:port"` strings (host an IPv4 address or a name),
     * with multicast or without. Default `[]`. (Not in the original.)
     */
    peers?: string[];
  }

  /** A node as every event and accessor hands it out. */
  interface EspialNode {
    id: string;
    host_name: string;
    ip: string;
    port: number;
    metadata: Record<string, unknown>;
  }

  /** What the connection filter is asked about: the node, plus its host name as `host`. */
  interface ConnectionFilterData extends EspialNode {
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

  /** The error of an `error` event; `code` is stable, e.g. `"ERR_ESPIAL_BIND"`. */
  interface EspialError extends Error {
    code: string;
  }

  /** The argument of `promotion`. */
  interface Promotion {
    /** The master before this node, or `undefined` if there was none. */
    previous_master: EspialNode | undefined;
  }

  /**
   * Who a custom event goes to: a node object, a node id, or an array of either; `null` or
   * omitted means every other node that joined the event.
   */
  type Targets = EspialNode | string | ReadonlyArray<EspialNode | string> | null;

  /** A listener of a custom event: the data sent (a Buffer if a Buffer was sent) and the sender. */
  type CustomEventListener = (data: any, from: EspialNode) => void;

  interface Espial extends EventEmitter {
    /** The version of the espial package. */
    readonly version: string;
    /** This node's own object. */
    get_node_info(): EspialNode;
    /**
     * The other nodes of the cluster, as announced by `added_node`, `updated_node` and
     * `removed_node`; `[]` once `exit()` has completed.
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
     * own event names throws an Error with code `ERR_ESPIAL_RESERVED_EVENT`.
     */
    join(event: string): void;
    /** Stops emitting the custom event `event`; other nodes stop sending it here. */
    leave(event: string): void;
    /**
     * Sends the custom event `event` to every other node that joined it, or to `targets`
     * (node objects or ids). `data` is any JSON value, or a Buffer / Uint8Array, which arrives
     * as a Buffer. Settles, and calls `callback`, once the message is handed to every
     * target's connection; waits while a connection is backlogged. Rejects with code
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

    /** This node has started. */
    on(event: 'listening', listener: () => void): this;
    /** Another node joined the cluster. */
    on(event: 'added_node', listener: (node: EspialNode) => void): this;
    /** This node was accepted into the cluster by `node`. */
    on(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    /** This node was refused by `node`'s connection filter; it joins no cluster through it. */
    on(event: 'node_rejected', listener: (node: EspialNode) => void): this;
    /** Another node changed its metadata; `node` is its new object. */
    on(event: 'updated_node', listener: (node: EspialNode) => void): this;
    /** Another node left the cluster, crashed, or stopped answering heartbeats. */
    on(event: 'removed_node', listener: (node: EspialNode) => void): this;
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
    on(event: string, listener: CustomEventListener): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;

    once(event: 'listening', listener: () => void): this;
    once(event: 'added_node', listener: (node: EspialNode) => void): this;
    once(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    once(event: 'node_rejected', listener: (node: EspialNode) => void): this;
    once(event: 'updated_node', listener: (node: EspialNode) => void): this;
    once(event: 'removed_node', listener: (node: EspialNode) => void): this;
    once(event: 'error', listener: (err: EspialError) => void): this;
    once(event: 'new_master', listener: (node: EspialNode) => void): this;
    once(event: 'promotion', listener: (promotion: Promotion) => void): this;
    once(event: 'demotion', listener: (new_master: EspialNode | undefined) => void): this;
    once(event: string, listener: CustomEventListener): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
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
