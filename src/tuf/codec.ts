import {
  Key,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
  type Metadata,
} from '@tufjs/models';
import { Signed } from '@tufjs/models/dist/base.js';
import { Delegations } from '@tufjs/models/dist/delegations.js';
import { DelegatedRole, SuccinctRoles } from '@tufjs/models/dist/role.js';

/**
 * Linear-time JSON codec for the `@tufjs/models` objects with large maps. The models' own
 * `toJSON`/`fromJSON` for snapshot meta, targets and delegations build each map with
 * `reduce((acc, …) => ({...acc, …}))`, which is quadratic: a 4096-bin snapshot took ~4.5 s per
 * (de)serialisation. These functions produce exactly the same JSON (same keys, same order; a test
 * checks equality with the models' output) and build the same model objects, one entry at a time.
 */
type Model = Root | Timestamp | Snapshot | Targets;
type JSONObject = Record<string, unknown>;

/** Define an own property even for keys like "__proto__" (which plain assignment would not). */
export function put<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** `obj[key]` if it is an own property (never something inherited like `__proto__`). */
export function own<T>(obj: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

function mapValues<A, B>(from: Record<string, A>, f: (v: A, k: string) => B): Record<string, B> {
  const out: Record<string, B> = {};
  for (const [k, v] of Object.entries(from)) put(out, k, f(v, k));
  return out;
}

function isObject(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function objectRecord(v: unknown, what: string): Record<string, JSONObject> {
  if (!isObject(v) || !Object.values(v).every(isObject))
    throw new TypeError(`${what} must be an object of objects`);
  return v as Record<string, JSONObject>;
}

function delegationsToJSON(d: Delegations): JSONObject {
  const json: JSONObject = { keys: mapValues(d.keys, (k) => k.toJSON()), ...d.unrecognizedFields };
  if (d.roles) json.roles = Object.values(d.roles).map((r) => r.toJSON());
  else if (d.succinctRoles) json.succinct_roles = d.succinctRoles.toJSON();
  return json;
}

export function signedToJSON(signed: Model): JSONObject {
  if (signed instanceof Snapshot) {
    return {
      _type: signed.type,
      meta: mapValues(signed.meta, (m) => m.toJSON()),
      spec_version: signed.specVersion,
      version: signed.version,
      expires: signed.expires,
      ...signed.unrecognizedFields,
    };
  }
  if (signed instanceof Targets) {
    const json: JSONObject = {
      _type: signed.type,
      spec_version: signed.specVersion,
      version: signed.version,
      expires: signed.expires,
      targets: mapValues(signed.targets, (t) => t.toJSON()),
      ...signed.unrecognizedFields,
    };
    if (signed.delegations) json.delegations = delegationsToJSON(signed.delegations);
    return json;
  }
  return signed.toJSON();
}

export function metadataToJSON(md: Metadata<Model>): JSONObject {
  return {
    signatures: Object.values(md.signatures).map((s) => s.toJSON()),
    signed: signedToJSON(md.signed),
    ...md.unrecognizedFields,
  };
}

function delegationsFromJSON(data: unknown): Delegations {
  if (!isObject(data)) throw new TypeError('delegations must be an object');
  const { keys, roles, succinct_roles, ...rest } = data;
  const keyMap = mapValues(objectRecord(keys, 'delegations.keys'), (k, id) => Key.fromJSON(id, k as never));
  let roleMap: Record<string, DelegatedRole> | undefined;
  if (roles !== undefined) {
    if (!Array.isArray(roles) || !roles.every(isObject))
      throw new TypeError('delegations.roles must be an array of objects');
    roleMap = {};
    for (const r of roles) {
      const role = DelegatedRole.fromJSON(r as never);
      if (Object.prototype.hasOwnProperty.call(roleMap, role.name))
        throw new TypeError(`delegated role ${role.name} is listed twice`);
      put(roleMap, role.name, role);
    }
  }
  const succinctRoles = isObject(succinct_roles)
    ? SuccinctRoles.fromJSON(succinct_roles as never)
    : undefined;
  return new Delegations({
    keys: keyMap,
    ...(roleMap ? { roles: roleMap } : {}),
    ...(succinctRoles ? { succinctRoles } : {}),
    unrecognizedFields: rest as never,
  });
}

/** The typed `signed` part of a role (throws TypeError/ValueError on schema errors, like the models). */
export function signedFromJSON(kind: 'root' | 'timestamp' | 'snapshot' | 'targets', data: JSONObject): Model {
  if (kind === 'root') return Root.fromJSON(data as never);
  if (kind === 'timestamp') return Timestamp.fromJSON(data as never);
  const { unrecognizedFields, ...common } = Signed.commonFieldsFromJSON(data as never);
  const fields = unrecognizedFields as JSONObject; // `_type` stays among them, as in the models
  if (kind === 'snapshot') {
    const { meta, ...rest } = fields;
    const metaMap =
      meta === undefined
        ? undefined
        : mapValues(objectRecord(meta, 'meta'), (m) => MetaFile.fromJSON(m as never));
    return new Snapshot({
      ...common,
      ...(metaMap ? { meta: metaMap } : {}),
      unrecognizedFields: rest as never,
    });
  }
  const { targets, delegations, ...rest } = fields;
  const targetMap =
    targets === undefined
      ? undefined
      : mapValues(objectRecord(targets, 'targets'), (t, path) => TargetFile.fromJSON(path, t as never));
  return new Targets({
    ...common,
    ...(targetMap ? { targets: targetMap } : {}),
    ...(delegations !== undefined ? { delegations: delegationsFromJSON(delegations) } : {}),
    unrecognizedFields: rest as never,
  });
}

export function signaturesFromJSON(
  list: readonly { keyid: string; sig: string }[],
): Record<string, Signature> {
  const out: Record<string, Signature> = {};
  for (const s of list) put(out, s.keyid, Signature.fromJSON(s as never));
  return out;
}
