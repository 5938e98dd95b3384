// Type-checked (tsc --strict --noEmit) against the types openapi-typescript generated from the
// served document: event variants narrow on `type`, bodies and answers have their fields.
import type { components, paths } from "./schema";

type Event = components["schemas"]["EventRow"];
type Start = paths["/api/v1/instances"]["post"]["requestBody"]["content"]["application/json"];
type Started = paths["/api/v1/instances"]["post"]["responses"]["201"]["content"]["application/json"];
type Detail = paths["/api/v1/instances/{id}"]["get"]["responses"]["200"]["content"]["application/json"];
type Problem = components["schemas"]["Problem"];

export function describe(e: Event): string {
  switch (e.type) {
    case "started":
      return `started ${e.workflow} (version ${e.version})`;
    case "action":
      return `${e.actor.id} did ${e.action} at ${e.step}`;
    case "refused":
      return `refused: ${e.reason}`;
    default:
      return e.type;
  }
}

export const start: Start = { workflow: "chengguan/tianshuinanlu/garden", data: { households: 120 } };

export function steps(s: Started, d: Detail): string[] {
  const branches: number[] = d.tokens.map((t) => t.id);
  return [...s.active_steps, ...branches.map(String)];
}

export function explain(p: Problem): string {
  return `${p.status} ${p.code}: ${p.detail}${p.field ? ` (${p.field})` : ""}`;
}
