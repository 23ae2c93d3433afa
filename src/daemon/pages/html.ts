import escapeHtml from 'escape-html';

/**
 * HTML built by a tagged template that escapes every interpolated value unless it is itself Html
 * made by this template. Target output, messages and config reach the page only as interpolated
 * values, so none of it can open a tag or leave an attribute: `<script>` in a device's output is
 * shown as the text `<script>`. Attributes are always written in double quotes, which
 * escape-html escapes together with `&<>'`.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

function render(value: HtmlValue): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}
