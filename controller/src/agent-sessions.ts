import type { ConnectResponse } from "@gpuorch/proto";

/** The controller → agent half of one node's Connect stream. */
export interface AgentSession {
  nodeId: string;
  send(msg: ConnectResponse): Promise<void>;
}

/**
 * Which nodes have a Connect stream on this controller right now. A node
 * that reconnects replaces its older session (the older stream is ending).
 * Commands to a node without a session are not queued: the reconcile on its
 * next heartbeat re-derives them from the database.
 */
export class AgentSessions {
  private readonly sessions = new Map<string, AgentSession>();

  attach(session: AgentSession): () => void {
    this.sessions.set(session.nodeId, session);
    return () => {
      if (this.sessions.get(session.nodeId) === session) this.sessions.delete(session.nodeId);
    };
  }

  has(nodeId: string): boolean {
    return this.sessions.has(nodeId);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Sends without waiting for flow control; false when the node has no stream here. */
  send(nodeId: string, msg: ConnectResponse): boolean {
    const s = this.sessions.get(nodeId);
    if (!s) return false;
    // A failed write means the stream is ending; the agent's reconnect brings a full report.
    s.send(msg).catch(() => {});
    return true;
  }
}
