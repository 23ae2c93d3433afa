/**
 * `${NAME}` and `${NAME:-default}` in string values, from the given variables (the lab's) and then
 * the environment. `$${` writes a literal `${`. A missing variable without a default is an error,
 * reported with the field it was in.
 */
const VAR_RE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function interpolate(text: string, vars: Record<string, string | undefined>): { value: string; missing: string[] } {
  const missing: string[] = [];
  const value = text.replace(VAR_RE, (match, name: string | undefined, def: string | undefined) => {
    if (match === '$${') return '${';
    const v = vars[name!];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    // Once per name: the same variable twice in one value is one problem.
    if (!missing.includes(name!)) missing.push(name!);
    return match;
  });
  return { value, missing };
}
