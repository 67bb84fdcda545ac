import type { ServiceSchema } from "moleculer";

/**
 * Moleculer types `mixins` as untyped schemas, so a mixin typed with its own settings, methods
 * and `this` does not fit there. The mixin is checked against its own type; this hands it over.
 */
export function asMixin<T extends object>(schema: T): Partial<ServiceSchema> {
	return schema as unknown as Partial<ServiceSchema>;
}
