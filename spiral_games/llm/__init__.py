"""The language-model policy: model resolution, prompting, and the generation engines."""
