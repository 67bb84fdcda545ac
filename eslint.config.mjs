// ESLint flat config: the recommended JavaScript and typescript-eslint rules; formatting is
// left to Prettier (`npm run lint` runs both).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "coverage/", ".stack/", ".compose/", ".swarm/", ".k8s/", "node_modules/", "tools/"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		// jest.config.js is CommonJS, as Jest loads it.
		files: ["**/*.js"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly" } },
	},
	{
		rules: {
			// `_`-prefixed parameters are positional ones a callback must accept (moleculer-web hooks).
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
		},
	},
);
