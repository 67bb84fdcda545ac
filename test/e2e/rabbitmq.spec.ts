import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { connectToStack, type Stack } from "../support/stack";
import { ROOT } from "../../scripts/stack-control";

const GUEST = `Basic ${Buffer.from("guest:guest").toString("base64")}`;
const CHROMIUM_ARGS = [
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
];

describe("the RabbitMQ management UI and API under /rabbitmq/", () => {
	let stack: Stack;

	beforeAll(async () => {
		stack = await connectToStack();
	});

	it("serves the UI page", async () => {
		const response = await fetch(`${stack.baseUrl}/rabbitmq/`);
		expect(response.status).toBe(200);
		expect(response.headers.get("content-type")).toMatch(/^text\/html/);
		expect(await response.text()).toContain("<title>RabbitMQ Management</title>");
	});

	it("answers API paths with the default vhost %2F, asking for credentials", async () => {
		const url = `${stack.baseUrl}/rabbitmq/api/queues/%2F/${stack.taskQueue}`;
		expect((await fetch(url)).status).toBe(401);
		const response = await fetch(url, { headers: { Authorization: GUEST } });
		expect(response.status).toBe(200);
		expect(await response.json()).toMatchObject({ name: stack.taskQueue, vhost: "/", durable: true });
	});

	it("passes query arguments on to the API", async () => {
		// Nginx rebuilds these URIs from $request_uri; the filter and the page size must still apply.
		const response = await fetch(`${stack.baseUrl}/rabbitmq/api/queues/%2F?page=1&page_size=1&name=${stack.taskQueue}&use_regex=false&pagination=true`, {
			headers: { Authorization: GUEST },
		});
		expect(response.status).toBe(200);
		const page = (await response.json()) as { page_size: number; items: { name: string }[] };
		expect(page.page_size).toBe(1);
		expect(page.items.map(item => item.name)).toEqual([stack.taskQueue]);
	});
});

describe("the RabbitMQ management UI in a real browser", () => {
	let stack: Stack;
	let browser: Browser;
	let page: Page;
	/** Every API call of the UI that failed or did not succeed. */
	const apiFailures: string[] = [];

	beforeAll(async () => {
		stack = await connectToStack();
		browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
		page = await browser.newPage();
		const isApi = (url: string) => new URL(url).pathname.startsWith("/rabbitmq/api/");
		page.on("requestfailed", request => {
			if (isApi(request.url())) apiFailures.push(`${request.url()}: ${request.failure()?.errorText}`);
		});
		page.on("response", response => {
			if (isApi(response.url()) && response.status() >= 400) apiFailures.push(`${response.url()}: HTTP ${response.status()}`);
		});
	}, 60_000);

	afterAll(() => browser?.close());

	it("logs in as guest and lists the task queue on the Queues page", async () => {
		await page.goto(`${stack.baseUrl}/rabbitmq/`);
		await page.fill('input[name="username"]', "guest");
		await page.fill('input[name="password"]', "guest");
		await page.click('input[type="submit"]');
		await page.waitForSelector("#logout");

		await page.click('a[href="#/queues"]');
		// Filter as a user would: transient Moleculer queues (REPL sessions, probes) can fill page 1.
		await page.fill("#queues-name", stack.taskQueue);
		await page.press("#queues-name", "Enter");
		const queueLink = page.locator(`a[href="#/queues/%2F/${stack.taskQueue}"]`);
		await queueLink.waitFor();
		await page.screenshot({ path: path.join(ROOT, ".stack/rabbitmq-queues.png"), fullPage: true });

		// The queue's own page fetches /api/queues/%2F/<queue> with query arguments.
		await queueLink.click();
		await page.locator("h1", { hasText: stack.taskQueue }).waitFor();
		await page.screenshot({ path: path.join(ROOT, ".stack/rabbitmq-task-queue.png") });

		expect(apiFailures).toEqual([]);
	}, 60_000);
});
