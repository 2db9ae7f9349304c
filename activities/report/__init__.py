"""The annual report rendered for filing: Chinese first (English as an option), HTML and PDF.

`labels` the words in both languages, `amounts` how numbers read, `charts` the inline SVG,
`sections` the report's parts (one small unit each, registered in one list), `page` the HTML
document, `pdf` the PDF printed from that same HTML, `rows` the flat rows of the CSV.
"""
