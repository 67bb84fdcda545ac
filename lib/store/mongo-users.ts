import { MongoClient, MongoServerError } from "mongodb";
import { mongoUriWithCredentials, secret } from "../config";

/**
 * The MongoDB application user of a deployment, set from the current secrets: run by compose's
 * one-shot `mongo-users` before every start of the cluster (`node dist/lib/store/mongo-users.js`).
 * It logs in as the administrator that the mongo image creates on its first start, and creates the
 * application user (readWrite on DB_NAME only) or sets its password and roles again. So a first
 * start and a rotated password take the same path, and a rotation never needs an empty volume.
 *
 * The administrator's own password rotates too: when the current one is refused, the previous one
 * (MONGO_ADMIN_PASSWORD_PREVIOUS, kept by `npm run secrets -- --rotate mongo_admin_password`) logs
 * in and sets the current one.
 */

type Env = Record<string, string | undefined>;

export interface MongoUsersSettings {
	/** MONGO_URI without credentials. */
	uri: string;
	dbName: string;
	adminUser: string;
	adminPassword: string;
	/** The administrator's password before the last rotation, or null. */
	previousAdminPassword: string | null;
	appUser: string;
	appPassword: string;
}

/** MongoDB's code for a refused login. */
const AUTHENTICATION_FAILED = 18;
const SERVER_SELECTION_TIMEOUT_MS = 30_000;

function required(env: Env, name: string): string {
	const value = secret(env, name);
	if (!value) throw new Error(`${name} (or ${name}_FILE) must be set`);
	return value;
}

export function mongoUsersSettings(env: Env = process.env): MongoUsersSettings {
	return {
		uri: required(env, "MONGO_URI"),
		dbName: required(env, "DB_NAME"),
		adminUser: required(env, "MONGO_ADMIN_USER"),
		adminPassword: required(env, "MONGO_ADMIN_PASSWORD"),
		previousAdminPassword: secret(env, "MONGO_ADMIN_PASSWORD_PREVIOUS"),
		appUser: required(env, "MONGO_USER"),
		appPassword: required(env, "MONGO_PASSWORD"),
	};
}

async function connectAs(settings: MongoUsersSettings, password: string): Promise<MongoClient> {
	const uri = mongoUriWithCredentials(settings.uri, settings.adminUser, password);
	return MongoClient.connect(uri, { serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS });
}

const refused = (err: unknown): boolean => err instanceof MongoServerError && err.code === AUTHENTICATION_FAILED;

/** Logs in as the administrator, moving it to the current password if only the previous one works. */
async function connectAdmin(settings: MongoUsersSettings, log: (line: string) => void): Promise<MongoClient> {
	try {
		return await connectAs(settings, settings.adminPassword);
	} catch (err) {
		const previous = settings.previousAdminPassword;
		if (!refused(err) || !previous || previous === settings.adminPassword) throw err;
	}
	const client = await connectAs(settings, settings.previousAdminPassword as string);
	try {
		await client.db("admin").command({ updateUser: settings.adminUser, pwd: settings.adminPassword });
		log(`the password of ${settings.adminUser} is now the current one`);
	} finally {
		await client.close();
	}
	return connectAs(settings, settings.adminPassword);
}

/** Creates the application user, or sets its password and roles again; returns what it did. */
export async function ensureAppUser(settings: MongoUsersSettings, log: (line: string) => void = () => undefined): Promise<"created" | "updated"> {
	const client = await connectAdmin(settings, log);
	try {
		const admin = client.db("admin");
		const roles = [{ role: "readWrite", db: settings.dbName }];
		const { users } = (await admin.command({ usersInfo: { user: settings.appUser, db: "admin" } })) as { users: unknown[] };
		const outcome = users.length > 0 ? "updated" : "created";
		if (outcome === "updated") await admin.command({ updateUser: settings.appUser, pwd: settings.appPassword, roles });
		else await admin.command({ createUser: settings.appUser, pwd: settings.appPassword, roles });
		log(`${outcome} ${settings.appUser} (readWrite on ${settings.dbName})`);
		return outcome;
	} finally {
		await client.close();
	}
}

if (require.main === module) {
	Promise.resolve()
		.then(() => ensureAppUser(mongoUsersSettings(), line => console.log(`mongo-users: ${line}`)))
		.catch((err: Error) => {
			console.error(`mongo-users: ${err.message}`);
			process.exit(1);
		});
}
