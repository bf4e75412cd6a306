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
    /** Milliseconds between heartbeats. Default `5000`. */
    send_presence_frequency?: number;
    /** Plain object of JSON values shared with every node. Default `{}`. */
    metadata?: Record<string, unknown>;
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
    /** Dotted IPv4 addresses whose /24 manual discovery scans. Default `[network.address.local]`. */
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
    /** Nodes to dial directly, as `"host:port"` strings. Default `[]`. (Not in the original.) */
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

  /** The error of an `error` event; `code` is stable, e.g. `"ERR_ESPIAL_BIND"`. */
  interface EspialError extends Error {
    code: string;
  }

  interface Espial extends EventEmitter {
    /** The version of the espial package. */
    readonly version: string;
    /** This node's own object. */
    get_node_info(): EspialNode;
    /** The other nodes of the cluster, as announced by `added_node` and `removed_node`. */
    get_nodes(): EspialNode[];
    /**
     * Leaves the cluster gracefully; afterwards the process can end by itself. Calling it
     * again returns the same promise.
     */
    exit(callback?: (err: Error | null) => void): Promise<void>;

    /** This node has started. */
    on(event: 'listening', listener: () => void): this;
    /** Another node joined the cluster. */
    on(event: 'added_node', listener: (node: EspialNode) => void): this;
    /** This node was accepted into the cluster by `node`. */
    on(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    /** Another node left the cluster. */
    on(event: 'removed_node', listener: (node: EspialNode) => void): this;
    /** Something failed, e.g. the node could not start. */
    on(event: 'error', listener: (err: EspialError) => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;

    once(event: 'listening', listener: () => void): this;
    once(event: 'added_node', listener: (node: EspialNode) => void): this;
    once(event: 'node_accepted', listener: (node: EspialNode) => void): this;
    once(event: 'removed_node', listener: (node: EspialNode) => void): this;
    once(event: 'error', listener: (err: EspialError) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
  }

  /** The module: call it like the original factory, or use it as a class with `new`. */
  interface EspialConstructor {
    /** Starts a node; throws a TypeError naming the option if an option is wrong. */
    (options?: EspialOptions | null): Espial;
    /** Starts a node; throws a TypeError naming the option if an option is wrong. */
    new (options?: EspialOptions | null): Espial;
    readonly prototype: Espial;
    /** The same as the module itself, for `const { Espial } = require('espial')`. */
    readonly Espial: EspialConstructor;
  }
}

declare const espial: espial.EspialConstructor;

export = espial;
