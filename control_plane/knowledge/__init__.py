"""Knowledge sources: turning uploads, web pages and whole sites into structured text for a bot's knowledge base.

``extract`` reads files (PDF, DOCX, XLSX, CSV, text, HTML) into blocks, ``fetch`` downloads one URL without letting a
tenant reach internal addresses, and ``crawl`` walks a site. Nothing here touches the database; the service and the
ingestion job build on these functions. This module imports nothing heavy on purpose, so importing the package (for
its endpoints, say) does not load the PDF and HTML libraries.
"""
