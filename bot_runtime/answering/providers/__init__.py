"""Answer providers behind :class:`bot_runtime.answering.engine.AnswerProvider`.

Import the module you need (``providers.gemini`` or ``providers.openai_compat``): each pulls in its SDK only when a
provider is constructed, so a runtime whose tenants use one provider never loads the other's SDK.
"""
