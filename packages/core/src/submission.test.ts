import { describe, expect, it } from "vitest";
import type { Principal } from "./models.js";
import { clampPageSize, readScope, resolveSubmitTeam } from "./submission.js";

const team: Principal = { tokenId: "t1", teamId: "team-a-id", teamName: "team-a", kind: "user", admin: false };
const admin: Principal = { tokenId: "t2", teamId: null, teamName: null, kind: "user", admin: true };
const agent: Principal = { tokenId: "t3", teamId: "team-a-id", teamName: "team-a", kind: "agent", admin: false };

describe("submission rules", () => {
  it("puts a team token's job in its own team", () => {
    expect(resolveSubmitTeam(team, undefined)).toBe("team-a");
    expect(resolveSubmitTeam(team, "team-a")).toBe("team-a");
  });
  it("refuses a team token submitting into another team, naming job.team", () => {
    expect(() => resolveSubmitTeam(team, "team-b")).toThrow(/job.team 'team-b'/);
  });
  it("lets an admin pick the team, defaulting to 'default'", () => {
    expect(resolveSubmitTeam(admin, "vision")).toBe("vision");
    expect(resolveSubmitTeam(admin, undefined)).toBe("default");
  });
  it("refuses agent tokens", () => {
    expect(() => resolveSubmitTeam(agent, undefined)).toThrow(/cannot submit/);
  });
  it("scopes reads to the team unless admin", () => {
    expect(readScope(team)).toEqual({ teamId: "team-a-id" });
    expect(readScope(admin)).toEqual({ teamId: null });
  });
  it("clamps page sizes and names the field when out of range", () => {
    expect(clampPageSize(undefined, "page_size")).toBe(50);
    expect(clampPageSize(10, "page_size")).toBe(10);
    expect(() => clampPageSize(5000, "page_size")).toThrow(/page_size/);
  });
});
