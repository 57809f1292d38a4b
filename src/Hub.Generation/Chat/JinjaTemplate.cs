// A Jinja2 subset for Hugging Face chat templates, rendered as transformers' apply_chat_template does: an
// ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and loop controls (break/continue), plus the
// globals raise_exception() and strftime_now() and a tojson filter that behaves like Python's json.dumps(ensure_ascii=False).
// Supported: {{ }}, {% if/elif/else %}, {% for x in xs [if cond] %} (tuple unpacking, loop.* and {% else %}),
// {% set %} (also ns.attr and block form), {% macro %} and calls, {% generation %}, comments, whitespace control,
// literals (string, number, bool/none in either case, list, dict), ~ + - * / // % arithmetic, comparisons, in/not in,
// and/or/not, inline if/else, attribute/subscript access, slices, filters and tests (the common built-ins), and Python
// string/dict methods (.strip(), .startswith(), .split(), .items(), .get(), ...).
// Not supported: template inheritance/includes, call blocks, extensions beyond those above, autoescaping.

using System.Globalization;
using System.Text;

namespace Hub.Generation.Chat;

/// <summary>A chat template failed to parse or render, or called <c>raise_exception()</c>; the message says where and why.</summary>
public sealed class ChatTemplateException : HubException
{
    /// <summary>Creates the exception.</summary>
    public ChatTemplateException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// A parsed Jinja template (the subset Hugging Face chat templates use). Parse once, render many times; rendering is
/// thread-safe. Values are plain .NET objects: string, numbers, bool, null, lists (<see cref="System.Collections.IList"/>)
/// and string-keyed dictionaries.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> _body;

    private JinjaTemplate(List<Node> body) => _body = body;

    /// <summary>Parses <paramref name="source"/>; syntax errors throw <see cref="ChatTemplateException"/> with the position.</summary>
    public static JinjaTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var parser = new Parser(Lexer.Tokenize(source));
        return new JinjaTemplate(parser.ParseAll());
    }

    /// <summary>Renders with <paramref name="variables"/> as the global context.</summary>
    public string Render(IDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var ctx = new Context(variables);
        var sb = new StringBuilder();
        try { Interp.Exec(_body, ctx, sb); }
        catch (ChatTemplateException) { throw; }
        catch (LoopSignal) { throw new ChatTemplateException("chat template: break/continue outside a loop"); }
        catch (Exception e) when (e is InvalidCastException or ArgumentException or IndexOutOfRangeException or FormatException or KeyNotFoundException or OverflowException)
        { throw new ChatTemplateException($"chat template rendering failed: {e.Message}", e); }
        return sb.ToString();
    }

    // ───────────────────────────── values ─────────────────────────────

    internal sealed class Undefined
    {
        public static readonly Undefined Instance = new();
        public override string ToString() => "";
    }

    internal sealed class Namespace
    {
        public readonly Dictionary<string, object?> Attrs = new(StringComparer.Ordinal);
    }

    internal delegate object? Callable(List<object?> args, Dictionary<string, object?> kwargs);

    // ───────────────────────────── lexer ─────────────────────────────

    private enum TK { Text, VarStart, VarEnd, BlockStart, BlockEnd, Name, String, Int, Float, Op, Eof }

    private readonly record struct Token(TK Kind, string Value, int Pos);

    private static class Lexer
    {
        public static List<Token> Tokenize(string src)
        {
            var tokens = new List<Token>();
            int i = 0;
            bool stripNextLeading = false, trimNextNewline = false;
            while (i < src.Length)
            {
                int open = FindOpen(src, i);
                string text = open < 0 ? src[i..] : src[i..open];
                if (trimNextNewline)
                {
                    if (text.StartsWith("\r\n", StringComparison.Ordinal)) text = text[2..];
                    else if (text.StartsWith('\n')) text = text[1..];
                }
                if (stripNextLeading) text = text.TrimStart();
                stripNextLeading = trimNextNewline = false;
                if (open < 0) { if (text.Length > 0) tokens.Add(new Token(TK.Text, text, i)); break; }

                char kind = src[open + 1];
                int p = open + 2;
                bool minusBefore = p < src.Length && src[p] == '-';
                bool plusBefore = p < src.Length && src[p] == '+';
                if (minusBefore || plusBefore) p++;
                if (minusBefore) text = text.TrimEnd();
                else if (kind != '{' && !plusBefore)
                {
                    // lstrip_blocks: remove spaces/tabs between the line start and a block/comment tag
                    int nl = text.LastIndexOf('\n');
                    var tail = text[(nl + 1)..];
                    if (tail.All(c => c == ' ' || c == '\t') && (nl >= 0 || tokens.Count == 0 || LineStartsHere(src, open - tail.Length)))
                        text = text[..(nl + 1)];
                }
                if (text.Length > 0) tokens.Add(new Token(TK.Text, text, i));

                if (kind == '#')
                {
                    int end = src.IndexOf("#}", p, StringComparison.Ordinal);
                    if (end < 0) throw Error(src, open, "unclosed comment");
                    bool minusAfter = end > 0 && src[end - 1] == '-' && end - 1 >= p;
                    i = end + 2;
                    stripNextLeading = minusAfter;
                    trimNextNewline = !minusAfter;
                    continue;
                }

                tokens.Add(new Token(kind == '{' ? TK.VarStart : TK.BlockStart, "", open));
                string close = kind == '{' ? "}}" : "%}";
                // expression tokens until the closing delimiter
                while (true)
                {
                    while (p < src.Length && char.IsWhiteSpace(src[p])) p++;
                    if (p >= src.Length) throw Error(src, open, $"unclosed '{{{kind}'");
                    if (src[p] == '-' && string.CompareOrdinal(src, p + 1, close, 0, 2) == 0)
                    {
                        stripNextLeading = true;
                        p += 3;
                        break;
                    }
                    if (src[p] == '+' && string.CompareOrdinal(src, p + 1, close, 0, 2) == 0) { p += 3; break; }
                    if (string.CompareOrdinal(src, p, close, 0, 2) == 0)
                    {
                        p += 2;
                        if (kind == '%') trimNextNewline = true;
                        break;
                    }
                    p = LexExprToken(src, p, tokens);
                }
                tokens.Add(new Token(kind == '{' ? TK.VarEnd : TK.BlockEnd, "", p));
                i = p;
            }
            tokens.Add(new Token(TK.Eof, "", src.Length));
            return tokens;
        }

        private static bool LineStartsHere(string src, int pos) => pos == 0 || src[pos - 1] == '\n';

        private static int FindOpen(string src, int from)
        {
            for (int i = from; i < src.Length - 1; i++)
                if (src[i] == '{' && (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#')) return i;
            return -1;
        }

        private static readonly string[] Ops = { "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "=" };

        private static int LexExprToken(string src, int p, List<Token> tokens)
        {
            char c = src[p];
            if (c == '\'' || c == '"')
            {
                var sb = new StringBuilder();
                int i = p + 1;
                while (true)
                {
                    if (i >= src.Length) throw Error(src, p, "unterminated string");
                    char ch = src[i];
                    if (ch == c) { i++; break; }
                    if (ch == '\\' && i + 1 < src.Length)
                    {
                        char e = src[i + 1];
                        i += 2;
                        switch (e)
                        {
                            case 'n': sb.Append('\n'); break;
                            case 't': sb.Append('\t'); break;
                            case 'r': sb.Append('\r'); break;
                            case '\\': sb.Append('\\'); break;
                            case '\'': sb.Append('\''); break;
                            case '"': sb.Append('"'); break;
                            case 'u' when i + 4 <= src.Length:
                                sb.Append((char)int.Parse(src.AsSpan(i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture)); i += 4; break;
                            default: sb.Append('\\').Append(e); break;
                        }
                        continue;
                    }
                    sb.Append(ch);
                    i++;
                }
                tokens.Add(new Token(TK.String, sb.ToString(), p));
                return i;
            }
            if (char.IsDigit(c))
            {
                int i = p;
                while (i < src.Length && (char.IsDigit(src[i]) || src[i] == '_')) i++;
                bool isFloat = false;
                if (i + 1 < src.Length && src[i] == '.' && char.IsDigit(src[i + 1]))
                {
                    isFloat = true;
                    i++;
                    while (i < src.Length && char.IsDigit(src[i])) i++;
                }
                tokens.Add(new Token(isFloat ? TK.Float : TK.Int, src[p..i].Replace("_", ""), p));
                return i;
            }
            if (char.IsLetter(c) || c == '_')
            {
                int i = p;
                while (i < src.Length && (char.IsLetterOrDigit(src[i]) || src[i] == '_')) i++;
                tokens.Add(new Token(TK.Name, src[p..i], p));
                return i;
            }
            foreach (var op in Ops)
                if (string.CompareOrdinal(src, p, op, 0, op.Length) == 0)
                {
                    tokens.Add(new Token(TK.Op, op, p));
                    return p + op.Length;
                }
            throw Error(src, p, $"unexpected character '{c}'");
        }

        private static ChatTemplateException Error(string src, int pos, string what)
        {
            int line = 1 + src.AsSpan(0, Math.Min(pos, src.Length)).Count('\n');
            return new ChatTemplateException($"chat template syntax error at line {line} (offset {pos}): {what}");
        }
    }

    // ───────────────────────────── AST ─────────────────────────────

    private abstract record Node;
    private sealed record TextNode(string Text) : Node;
    private sealed record OutputNode(Expr Expr) : Node;
    private sealed record IfNode(List<(Expr Cond, List<Node> Body)> Branches, List<Node>? Else) : Node;
    private sealed record ForNode(List<string> Targets, Expr Iter, Expr? Filter, List<Node> Body, List<Node>? Else) : Node;
    private sealed record SetNode(Expr? Target, string Name, string? Attr, Expr? Value, List<Node>? Body) : Node;
    private sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Params, List<Node> Body) : Node;
    private sealed record BreakNode(bool IsBreak) : Node;

    private abstract record Expr;
    private sealed record Const(object? Value) : Expr;
    private sealed record Var(string Name) : Expr;
    private sealed record ListExpr(List<Expr> Items) : Expr;
    private sealed record DictExpr(List<(Expr Key, Expr Value)> Items) : Expr;
    private sealed record Attr(Expr Obj, string Name) : Expr;
    private sealed record Item(Expr Obj, Expr Key) : Expr;
    private sealed record SliceExpr(Expr Obj, Expr? Start, Expr? Stop, Expr? Step) : Expr;
    private sealed record Call(Expr Fn, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
    private sealed record Filter(Expr Value, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
    private sealed record Test(Expr Value, string Name, List<Expr> Args, bool Negated) : Expr;
    private sealed record Unary(string Op, Expr Operand) : Expr;
    private sealed record Binary(string Op, Expr Left, Expr Right) : Expr;
    private sealed record Cond(Expr Test, Expr Then, Expr? Else) : Expr;

    // ───────────────────────────── parser ─────────────────────────────

    private sealed class Parser(List<Token> tokens)
    {
        private int _p;

        private Token Peek => tokens[_p];
        private Token Next() => tokens[_p++];

        private ChatTemplateException Error(string what) => new($"chat template syntax error at offset {Peek.Pos}: {what} (found '{Peek.Value}' {Peek.Kind})");

        private bool IsName(string n) => Peek.Kind == TK.Name && Peek.Value == n;
        private bool IsOp(string o) => Peek.Kind == TK.Op && Peek.Value == o;

        private void ExpectOp(string o) { if (!IsOp(o)) throw Error($"expected '{o}'"); _p++; }
        private void ExpectName(string n) { if (!IsName(n)) throw Error($"expected '{n}'"); _p++; }
        private string Name() { if (Peek.Kind != TK.Name) throw Error("expected a name"); return Next().Value; }
        private void ExpectBlockEnd() { if (Peek.Kind != TK.BlockEnd) throw Error("expected '%}'"); _p++; }

        public List<Node> ParseAll()
        {
            var body = ParseBody(out var end);
            if (end is not null) throw Error($"unexpected '{{% {end} %}}'");
            return body;
        }

        // Parses nodes until EOF or a block tag whose keyword is an end/else marker, which is returned (tag left open).
        private List<Node> ParseBody(out string? endTag, params string[] enders)
        {
            var nodes = new List<Node>();
            while (true)
            {
                var t = Peek;
                switch (t.Kind)
                {
                    case TK.Eof:
                        endTag = null;
                        if (enders.Length > 0) throw Error($"missing '{{% {enders[^1]} %}}'");
                        return nodes;
                    case TK.Text:
                        _p++;
                        nodes.Add(new TextNode(t.Value));
                        break;
                    case TK.VarStart:
                        _p++;
                        nodes.Add(new OutputNode(ParseExpr()));
                        if (Peek.Kind != TK.VarEnd) throw Error("expected '}}'");
                        _p++;
                        break;
                    case TK.BlockStart:
                        var kw = tokens[_p + 1];
                        if (kw.Kind == TK.Name && enders.Contains(kw.Value))
                        {
                            _p += 2;
                            endTag = kw.Value;
                            return nodes;
                        }
                        _p++;
                        nodes.Add(ParseStatement());
                        break;
                    default:
                        throw Error("unexpected token");
                }
            }
        }

        private Node ParseStatement()
        {
            var kw = Name();
            switch (kw)
            {
                case "if":
                {
                    var branches = new List<(Expr, List<Node>)>();
                    var cond = ParseExpr();
                    ExpectBlockEnd();
                    while (true)
                    {
                        var body = ParseBody(out var end, "elif", "else", "endif");
                        branches.Add((cond, body));
                        if (end == "elif") { cond = ParseExpr(); ExpectBlockEnd(); continue; }
                        List<Node>? elseBody = null;
                        if (end == "else")
                        {
                            ExpectBlockEnd();
                            elseBody = ParseBody(out _, "endif");
                        }
                        ExpectBlockEnd();
                        return new IfNode(branches, elseBody);
                    }
                }
                case "for":
                {
                    var targets = new List<string> { Name() };
                    while (IsOp(",")) { _p++; targets.Add(Name()); }
                    ExpectName("in");
                    var iter = ParseExpr(noCondExpr: true);
                    Expr? filter = null;
                    if (IsName("if")) { _p++; filter = ParseExpr(noCondExpr: true); }
                    if (IsName("recursive")) throw Error("recursive loops are not supported");
                    ExpectBlockEnd();
                    var body = ParseBody(out var end, "else", "endfor");
                    List<Node>? elseBody = null;
                    if (end == "else") { ExpectBlockEnd(); elseBody = ParseBody(out _, "endfor"); }
                    ExpectBlockEnd();
                    return new ForNode(targets, iter, filter, body, elseBody);
                }
                case "set":
                {
                    var name = Name();
                    string? attr = null;
                    if (IsOp(".")) { _p++; attr = Name(); }
                    if (IsOp("="))
                    {
                        _p++;
                        var value = ParseExpr();
                        ExpectBlockEnd();
                        return new SetNode(null, name, attr, value, null);
                    }
                    ExpectBlockEnd();
                    var body = ParseBody(out _, "endset");
                    ExpectBlockEnd();
                    return new SetNode(null, name, attr, null, body);
                }
                case "macro":
                {
                    var name = Name();
                    ExpectOp("(");
                    var ps = new List<(string, Expr?)>();
                    while (!IsOp(")"))
                    {
                        var pn = Name();
                        Expr? def = null;
                        if (IsOp("=")) { _p++; def = ParseExpr(); }
                        ps.Add((pn, def));
                        if (IsOp(",")) _p++;
                    }
                    _p++;
                    ExpectBlockEnd();
                    var body = ParseBody(out _, "endmacro");
                    ExpectBlockEnd();
                    return new MacroNode(name, ps, body);
                }
                case "generation":
                {
                    ExpectBlockEnd();
                    var body = ParseBody(out _, "endgeneration");
                    ExpectBlockEnd();
                    return new IfNode(new List<(Expr, List<Node>)> { (new Const(true), body) }, null);
                }
                case "break":
                case "continue":
                    ExpectBlockEnd();
                    return new BreakNode(kw == "break");
                case "do":
                {
                    var e = ParseExpr();
                    ExpectBlockEnd();
                    return new SetNode(e, "", null, null, null);
                }
                default:
                    _p--;
                    throw Error($"unsupported statement '{kw}'");
            }
        }

        public Expr ParseExpr(bool noCondExpr = false)
        {
            var e = ParseOr();
            if (!noCondExpr && IsName("if"))
            {
                _p++;
                var cond = ParseOr();
                Expr? other = null;
                if (IsName("else")) { _p++; other = ParseExpr(); }
                return new Cond(cond, e, other);
            }
            return e;
        }

        private Expr ParseOr()
        {
            var e = ParseAnd();
            while (IsName("or")) { _p++; e = new Binary("or", e, ParseAnd()); }
            return e;
        }

        private Expr ParseAnd()
        {
            var e = ParseNot();
            while (IsName("and")) { _p++; e = new Binary("and", e, ParseNot()); }
            return e;
        }

        private Expr ParseNot()
        {
            if (IsName("not")) { _p++; return new Unary("not", ParseNot()); }
            return ParseCompare();
        }

        private Expr ParseCompare()
        {
            var e = ParseMath1();
            while (true)
            {
                if (Peek.Kind == TK.Op && Peek.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
                {
                    var op = Next().Value;
                    e = new Binary(op, e, ParseMath1());
                }
                else if (IsName("in")) { _p++; e = new Binary("in", e, ParseMath1()); }
                else if (IsName("not") && tokens[_p + 1].Kind == TK.Name && tokens[_p + 1].Value == "in")
                {
                    _p += 2;
                    e = new Binary("notin", e, ParseMath1());
                }
                else return e;
            }
        }

        private Expr ParseMath1()
        {
            var e = ParseConcat();
            while (Peek.Kind == TK.Op && Peek.Value is "+" or "-") { var op = Next().Value; e = new Binary(op, e, ParseConcat()); }
            return e;
        }

        private Expr ParseConcat()
        {
            var e = ParseMath2();
            while (IsOp("~")) { _p++; e = new Binary("~", e, ParseMath2()); }
            return e;
        }

        private Expr ParseMath2()
        {
            var e = ParsePow();
            while (Peek.Kind == TK.Op && Peek.Value is "*" or "/" or "//" or "%") { var op = Next().Value; e = new Binary(op, e, ParsePow()); }
            return e;
        }

        private Expr ParsePow()
        {
            var e = ParseUnary();
            while (IsOp("**")) { _p++; e = new Binary("**", e, ParseUnary()); }
            return e;
        }

        private Expr ParseUnary()
        {
            if (IsOp("-")) { _p++; return new Unary("-", ParseUnary()); }
            if (IsOp("+")) { _p++; return ParseUnary(); }
            return ParseFilters(ParsePostfix(ParsePrimary()));
        }

        private Expr ParsePrimary()
        {
            var t = Next();
            switch (t.Kind)
            {
                case TK.String:
                {
                    var s = t.Value;
                    while (Peek.Kind == TK.String) s += Next().Value; // adjacent literals concatenate
                    return new Const(s);
                }
                case TK.Int: return new Const(long.Parse(t.Value, CultureInfo.InvariantCulture));
                case TK.Float: return new Const(double.Parse(t.Value, CultureInfo.InvariantCulture));
                case TK.Name:
                    return t.Value switch
                    {
                        "true" or "True" => new Const(true),
                        "false" or "False" => new Const(false),
                        "none" or "None" => new Const(null),
                        _ => new Var(t.Value),
                    };
                case TK.Op when t.Value == "(":
                {
                    var e = ParseExpr();
                    if (IsOp(","))
                    {
                        var items = new List<Expr> { e };
                        while (IsOp(",")) { _p++; if (IsOp(")")) break; items.Add(ParseExpr()); }
                        e = new ListExpr(items);
                    }
                    ExpectOp(")");
                    return e;
                }
                case TK.Op when t.Value == "[":
                {
                    var items = new List<Expr>();
                    while (!IsOp("]")) { items.Add(ParseExpr()); if (IsOp(",")) _p++; else break; }
                    ExpectOp("]");
                    return new ListExpr(items);
                }
                case TK.Op when t.Value == "{":
                {
                    var items = new List<(Expr, Expr)>();
                    while (!IsOp("}"))
                    {
                        var k = ParseExpr();
                        ExpectOp(":");
                        items.Add((k, ParseExpr()));
                        if (IsOp(",")) _p++; else break;
                    }
                    ExpectOp("}");
                    return new DictExpr(items);
                }
                default:
                    _p--;
                    throw Error("expected an expression");
            }
        }

        private Expr ParsePostfix(Expr e)
        {
            while (true)
            {
                if (IsOp(".")) { _p++; e = new Attr(e, Name()); }
                else if (IsOp("["))
                {
                    _p++;
                    Expr? start = null, stop = null, step = null;
                    bool slice = false;
                    if (!IsOp(":")) start = ParseExpr();
                    if (IsOp(":"))
                    {
                        slice = true;
                        _p++;
                        if (!IsOp("]") && !IsOp(":")) stop = ParseExpr();
                        if (IsOp(":")) { _p++; if (!IsOp("]")) step = ParseExpr(); }
                    }
                    ExpectOp("]");
                    e = slice ? new SliceExpr(e, start, stop, step) : new Item(e, start!);
                }
                else if (IsOp("("))
                {
                    var (args, kwargs) = ParseArgs();
                    e = new Call(e, args, kwargs);
                }
                else return e;
            }
        }

        private (List<Expr>, List<(string, Expr)>) ParseArgs()
        {
            ExpectOp("(");
            var args = new List<Expr>();
            var kwargs = new List<(string, Expr)>();
            while (!IsOp(")"))
            {
                if (Peek.Kind == TK.Name && tokens[_p + 1].Kind == TK.Op && tokens[_p + 1].Value == "=")
                {
                    var n = Next().Value;
                    _p++;
                    kwargs.Add((n, ParseExpr()));
                }
                else args.Add(ParseExpr());
                if (IsOp(",")) _p++; else break;
            }
            ExpectOp(")");
            return (args, kwargs);
        }

        private Expr ParseFilters(Expr e)
        {
            while (true)
            {
                if (IsOp("|"))
                {
                    _p++;
                    var name = Name();
                    var args = new List<Expr>();
                    var kwargs = new List<(string, Expr)>();
                    if (IsOp("(")) (args, kwargs) = ParseArgs();
                    e = new Filter(e, name, args, kwargs);
                }
                else if (IsName("is"))
                {
                    _p++;
                    bool neg = false;
                    if (IsName("not")) { _p++; neg = true; }
                    var name = Name();
                    var args = new List<Expr>();
                    if (IsOp("(")) args = ParseArgs().Item1;
                    else if (Peek.Kind is TK.String or TK.Int or TK.Float || (Peek.Kind == TK.Name && Peek.Value is not ("and" or "or" or "else" or "if" or "is" or "in" or "not")))
                        args.Add(ParsePrimary());
                    e = new Test(e, name, args, neg);
                }
                else return e;
            }
        }
    }

    // ───────────────────────────── interpreter ─────────────────────────────

    private sealed class LoopSignal(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }

    private sealed class Context
    {
        private readonly List<Dictionary<string, object?>> _scopes = new();

        public Context(IDictionary<string, object?> globals)
        {
            var g = new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["raise_exception"] = (Callable)((a, _) => throw new ChatTemplateException($"chat template raised: {Str(a.Count > 0 ? a[0] : "")}")),
                ["namespace"] = (Callable)((a, kw) =>
                {
                    var ns = new Namespace();
                    if (a.Count > 0 && a[0] is IDictionary<string, object?> d) foreach (var (k, v) in d) ns.Attrs[k] = v;
                    foreach (var (k, v) in kw) ns.Attrs[k] = v;
                    return ns;
                }),
                ["range"] = (Callable)((a, _) =>
                {
                    long start = 0, stop, step = 1;
                    if (a.Count == 1) stop = ToLong(a[0]);
                    else { start = ToLong(a[0]); stop = ToLong(a[1]); if (a.Count > 2) step = ToLong(a[2]); }
                    if (step == 0) throw new ChatTemplateException("range() step must not be zero");
                    var list = new List<object?>();
                    for (long i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
                    return list;
                }),
                ["dict"] = (Callable)((_, kw) => new Dictionary<string, object?>(kw, StringComparer.Ordinal)),
                ["strftime_now"] = (Callable)((a, _) => Strftime(DateTime.Now, Str(a[0]))),
            };
            foreach (var (k, v) in globals) g[k] = v;
            _scopes.Add(g);
        }

        public object? Get(string name)
        {
            for (int i = _scopes.Count - 1; i >= 0; i--)
                if (_scopes[i].TryGetValue(name, out var v)) return v;
            return Undefined.Instance;
        }

        public void Set(string name, object? value) => _scopes[^1][name] = value;
        public void Push() => _scopes.Add(new Dictionary<string, object?>(StringComparer.Ordinal));
        public void Pop() => _scopes.RemoveAt(_scopes.Count - 1);
    }

    private static class Interp
    {
        public static void Exec(List<Node> nodes, Context ctx, StringBuilder sb)
        {
            foreach (var n in nodes) Exec(n, ctx, sb);
        }

        private static void Exec(Node node, Context ctx, StringBuilder sb)
        {
            switch (node)
            {
                case TextNode t: sb.Append(t.Text); break;
                case OutputNode o: sb.Append(Str(Eval(o.Expr, ctx))); break;
                case IfNode i:
                    foreach (var (cond, body) in i.Branches)
                        if (Truthy(Eval(cond, ctx))) { Exec(body, ctx, sb); return; }
                    if (i.Else is not null) Exec(i.Else, ctx, sb);
                    break;
                case ForNode f: ExecFor(f, ctx, sb); break;
                case SetNode s:
                {
                    if (s.Target is not null) { Eval(s.Target, ctx); break; }
                    object? value;
                    if (s.Body is not null) { var inner = new StringBuilder(); Exec(s.Body, ctx, inner); value = inner.ToString(); }
                    else value = Eval(s.Value!, ctx);
                    if (s.Attr is null) ctx.Set(s.Name, value);
                    else if (ctx.Get(s.Name) is Namespace ns) ns.Attrs[s.Attr] = value;
                    else throw new ChatTemplateException($"chat template: cannot assign '{s.Name}.{s.Attr}': '{s.Name}' is not a namespace()");
                    break;
                }
                case MacroNode m:
                    ctx.Set(m.Name, (Callable)((args, kwargs) =>
                    {
                        ctx.Push();
                        try
                        {
                            for (int k = 0; k < m.Params.Count; k++)
                            {
                                var (pn, def) = m.Params[k];
                                ctx.Set(pn, k < args.Count ? args[k] : kwargs.TryGetValue(pn, out var kv) ? kv : def is null ? Undefined.Instance : Eval(def, ctx));
                            }
                            var inner = new StringBuilder();
                            Exec(m.Body, ctx, inner);
                            return inner.ToString();
                        }
                        finally { ctx.Pop(); }
                    }));
                    break;
                case BreakNode b: throw new LoopSignal(b.IsBreak);
                default: throw new InvalidOperationException(node.GetType().Name);
            }
        }

        private static void ExecFor(ForNode f, Context ctx, StringBuilder sb)
        {
            var items = Iterate(Eval(f.Iter, ctx)).ToList();
            if (f.Filter is not null)
            {
                var kept = new List<object?>();
                ctx.Push();
                foreach (var it in items) { Bind(f.Targets, it, ctx); if (Truthy(Eval(f.Filter, ctx))) kept.Add(it); }
                ctx.Pop();
                items = kept;
            }
            if (items.Count == 0)
            {
                if (f.Else is not null) Exec(f.Else, ctx, sb);
                return;
            }
            ctx.Push();
            try
            {
                for (int i = 0; i < items.Count; i++)
                {
                    var loop = new Dictionary<string, object?>(StringComparer.Ordinal)
                    {
                        ["index"] = (long)(i + 1), ["index0"] = (long)i, ["first"] = i == 0, ["last"] = i == items.Count - 1,
                        ["length"] = (long)items.Count, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                        ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
                        ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
                    };
                    var idx = i;
                    loop["cycle"] = (Callable)((a, _) => a.Count == 0 ? null : a[idx % a.Count]);
                    ctx.Set("loop", loop);
                    Bind(f.Targets, items[i], ctx);
                    try { Exec(f.Body, ctx, sb); }
                    catch (LoopSignal s) { if (s.IsBreak) break; }
                }
            }
            finally { ctx.Pop(); }
        }

        private static void Bind(List<string> targets, object? item, Context ctx)
        {
            if (targets.Count == 1) { ctx.Set(targets[0], item); return; }
            var parts = Iterate(item).ToList();
            if (parts.Count != targets.Count) throw new ChatTemplateException($"chat template: cannot unpack {parts.Count} values into {targets.Count} loop variables");
            for (int i = 0; i < targets.Count; i++) ctx.Set(targets[i], parts[i]);
        }

        public static object? Eval(Expr e, Context ctx)
        {
            switch (e)
            {
                case Const c: return c.Value;
                case Var v: return ctx.Get(v.Name);
                case ListExpr l: return l.Items.Select(x => Eval(x, ctx)).ToList();
                case DictExpr d:
                {
                    var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var (k, val) in d.Items) dict[Str(Eval(k, ctx))] = Eval(val, ctx);
                    return dict;
                }
                case Attr a: return GetAttr(Eval(a.Obj, ctx), a.Name);
                case Item it:
                {
                    var obj = Eval(it.Obj, ctx);
                    var key = Eval(it.Key, ctx);
                    return key is string s && obj is not System.Collections.IList and not string ? GetAttr(obj, s) : GetItem(obj, key);
                }
                case SliceExpr s: return Slice(Eval(s.Obj, ctx), s.Start is null ? null : Eval(s.Start, ctx), s.Stop is null ? null : Eval(s.Stop, ctx), s.Step is null ? null : Eval(s.Step, ctx));
                case Call c:
                {
                    var fn = Eval(c.Fn, ctx);
                    var args = c.Args.Select(x => Eval(x, ctx)).ToList();
                    var kwargs = c.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, ctx), StringComparer.Ordinal);
                    if (fn is Callable call) return call(args, kwargs);
                    throw new ChatTemplateException($"chat template: {Describe(c.Fn)} is not callable (it is {TypeName(fn)})");
                }
                case Filter f: return Filters.Apply(f.Name, Eval(f.Value, ctx), f.Args.Select(x => Eval(x, ctx)).ToList(), f.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, ctx), StringComparer.Ordinal));
                case Test t:
                {
                    var r = Tests.Apply(t.Name, Eval(t.Value, ctx), t.Args.Select(x => Eval(x, ctx)).ToList());
                    return t.Negated ? !r : r;
                }
                case Unary u:
                {
                    var v = Eval(u.Operand, ctx);
                    return u.Op == "not" ? !Truthy(v) : v switch { long l => -l, double d => -d, _ => throw new ChatTemplateException($"chat template: cannot negate {TypeName(v)}") };
                }
                case Cond c: return Truthy(Eval(c.Test, ctx)) ? Eval(c.Then, ctx) : c.Else is null ? Undefined.Instance : Eval(c.Else, ctx);
                case Binary b:
                {
                    if (b.Op == "and") { var l = Eval(b.Left, ctx); return Truthy(l) ? Eval(b.Right, ctx) : l; }
                    if (b.Op == "or") { var l = Eval(b.Left, ctx); return Truthy(l) ? l : Eval(b.Right, ctx); }
                    return BinOp(b.Op, Eval(b.Left, ctx), Eval(b.Right, ctx));
                }
                default: throw new InvalidOperationException(e.GetType().Name);
            }
        }

        private static string Describe(Expr e) => e switch { Var v => $"'{v.Name}'", Attr a => $"'.{a.Name}'", _ => "expression" };

        private static object? BinOp(string op, object? l, object? r)
        {
            switch (op)
            {
                case "~": return Str(l) + Str(r);
                case "==": return Eq(l, r);
                case "!=": return !Eq(l, r);
                case "in": return Contains(r, l);
                case "notin": return !Contains(r, l);
                case "<": return Compare(l, r) < 0;
                case ">": return Compare(l, r) > 0;
                case "<=": return Compare(l, r) <= 0;
                case ">=": return Compare(l, r) >= 0;
                case "+":
                    if (l is string ls && r is string rs) return ls + rs;
                    if (l is System.Collections.IList ll && r is System.Collections.IList rl) return ll.Cast<object?>().Concat(rl.Cast<object?>()).ToList();
                    return Arith(op, l, r);
                case "*" when l is string s && r is long n: return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n)));
                default: return Arith(op, l, r);
            }
        }

        private static object Arith(string op, object? l, object? r)
        {
            if (l is bool lb) l = lb ? 1L : 0L;
            if (r is bool rb) r = rb ? 1L : 0L;
            if (l is long a && r is long b)
                return op switch
                {
                    "+" => (object)(a + b), "-" => a - b, "*" => a * b,
                    "/" => (double)a / b,
                    "//" => b == 0 ? throw new ChatTemplateException("chat template: integer division by zero") : (object)(long)Math.Floor((double)a / b),
                    "%" => b == 0 ? throw new ChatTemplateException("chat template: modulo by zero") : (object)(((a % b) + b) % b),
                    "**" => (object)(long)Math.Pow(a, b),
                    _ => throw new InvalidOperationException(op),
                };
            if (l is long or double && r is long or double)
            {
                double x = Convert.ToDouble(l, CultureInfo.InvariantCulture), y = Convert.ToDouble(r, CultureInfo.InvariantCulture);
                return op switch
                {
                    "+" => x + y, "-" => x - y, "*" => x * y, "/" => x / y, "//" => Math.Floor(x / y),
                    "%" => x - y * Math.Floor(x / y), "**" => Math.Pow(x, y), _ => throw new InvalidOperationException(op),
                };
            }
            throw new ChatTemplateException($"chat template: unsupported operand types for {op}: {TypeName(l)} and {TypeName(r)}");
        }
    }

    // ───────────────────────────── semantics helpers ─────────────────────────────

    internal static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        int i => i != 0,
        string s => s.Length > 0,
        System.Collections.ICollection c => c.Count > 0,
        Namespace => true,
        _ => true,
    };

    internal static string TypeName(object? v) => v switch
    {
        null => "none", Undefined => "undefined", string => "string", bool => "bool", long or int => "int", double or float => "float",
        System.Collections.IDictionary or IDictionary<string, object?> => "dict", System.Collections.IList => "list", Callable => "function", _ => v.GetType().Name,
    };

    private static object? Normalize(object? v) => v switch { int i => (long)i, float f => (double)f, _ => v };

    internal static bool Eq(object? a, object? b)
    {
        a = Normalize(a); b = Normalize(b);
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (a is bool ba && b is bool bb) return ba == bb;
        if (a is long or double && b is long or double) return Convert.ToDouble(a, CultureInfo.InvariantCulture) == Convert.ToDouble(b, CultureInfo.InvariantCulture);
        if (a is string sa && b is string sb) return sa == sb;
        if (a is System.Collections.IList la && b is System.Collections.IList lb)
        {
            if (la.Count != lb.Count) return false;
            for (int i = 0; i < la.Count; i++) if (!Eq(la[i], lb[i])) return false;
            return true;
        }
        return Equals(a, b);
    }

    private static int Compare(object? a, object? b)
    {
        a = Normalize(a); b = Normalize(b);
        if (a is long or double && b is long or double)
            return Convert.ToDouble(a, CultureInfo.InvariantCulture).CompareTo(Convert.ToDouble(b, CultureInfo.InvariantCulture));
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        throw new ChatTemplateException($"chat template: cannot compare {TypeName(a)} with {TypeName(b)}");
    }

    private static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new ChatTemplateException($"chat template: 'in <string>' needs a string, not {TypeName(item)}"),
        IDictionary<string, object?> d => item is string k && d.ContainsKey(k),
        Namespace ns => item is string k2 && ns.Attrs.ContainsKey(k2),
        System.Collections.IList l => l.Cast<object?>().Any(x => Eq(x, item)),
        Undefined or null => throw new ChatTemplateException($"chat template: 'in' on {TypeName(container)}"),
        _ => false,
    };

    internal static IEnumerable<object?> Iterate(object? v) => v switch
    {
        null or Undefined => Enumerable.Empty<object?>(),
        string s => s.Select(c => (object?)c.ToString()),
        IDictionary<string, object?> d => d.Keys.Select(k => (object?)k),
        System.Collections.IEnumerable e => e.Cast<object?>(),
        _ => throw new ChatTemplateException($"chat template: {TypeName(v)} is not iterable"),
    };

    private static long ToLong(object? v) => v switch
    {
        long l => l, int i => i, double d => (long)d, bool b => b ? 1 : 0,
        string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) => p,
        _ => throw new ChatTemplateException($"chat template: expected an integer, got {TypeName(v)}"),
    };

    /// <summary>Python's str() of a value (Jinja output).</summary>
    internal static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long or int => Convert.ToString(v, CultureInfo.InvariantCulture)!,
        double or float => PyFloat(Convert.ToDouble(v, CultureInfo.InvariantCulture)),
        _ => Repr(v),
    };

    private static string PyFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        var s = d.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') ? s.Replace("E+", "e+").Replace("E-", "e-") : s + ".0";
    }

    private static string Repr(object? v) => v switch
    {
        string s => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n") + "'",
        IDictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        System.Collections.IList l => "[" + string.Join(", ", l.Cast<object?>().Select(Repr)) + "]",
        Namespace n => "<Namespace " + Repr(n.Attrs) + ">",
        _ => Str(v),
    };

    private static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case IDictionary<string, object?> d: return key is string k && d.TryGetValue(k, out var v) ? v : Undefined.Instance;
            case System.Collections.IList l:
            {
                var i = ToLong(key);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : Undefined.Instance;
            }
            case string s:
            {
                var i = ToLong(key);
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Instance;
            }
            case Namespace ns: return key is string nk && ns.Attrs.TryGetValue(nk, out var nv) ? nv : Undefined.Instance;
            case Undefined or null: return Undefined.Instance;
            default: return Undefined.Instance;
        }
    }

    private static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        List<object?> items;
        bool isString = obj is string;
        items = obj switch
        {
            string s => s.Select(c => (object?)c).ToList(),
            System.Collections.IList l => l.Cast<object?>().ToList(),
            _ => throw new ChatTemplateException($"chat template: cannot slice {TypeName(obj)}"),
        };
        int n = items.Count;
        long st = step is null or Undefined ? 1 : ToLong(step);
        if (st == 0) throw new ChatTemplateException("chat template: slice step cannot be zero");
        long Norm(object? v, long def)
        {
            if (v is null or Undefined) return def;
            var x = ToLong(v);
            if (x < 0) x += n;
            return st > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long a = Norm(start, st > 0 ? 0 : n - 1), b = Norm(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
        return isString ? string.Concat(result.Select(c => (char)c!)) : result;
    }

    private static object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case Namespace ns:
                return ns.Attrs.TryGetValue(name, out var nv) ? nv : Undefined.Instance;
            case IDictionary<string, object?> d:
                if (d.TryGetValue(name, out var dv)) return dv;
                return name switch
                {
                    "items" => (Callable)((_, _) => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()),
                    "keys" => (Callable)((_, _) => d.Keys.Select(k => (object?)k).ToList()),
                    "values" => (Callable)((_, _) => d.Values.ToList()),
                    "get" => (Callable)((a, _) => d.TryGetValue(Str(a[0]), out var gv) ? gv : a.Count > 1 ? a[1] : null),
                    _ => Undefined.Instance,
                };
            case string s:
                return StringMethod(s, name);
            case System.Collections.IList l:
                return name switch
                {
                    "append" => (Callable)((a, _) => { l.Add(a[0]); return null; }),
                    "pop" => (Callable)((a, _) => { var i = a.Count > 0 ? (int)ToLong(a[0]) : l.Count - 1; if (i < 0) i += l.Count; var x = l[i]; l.RemoveAt(i); return x; }),
                    "index" => (Callable)((a, _) => (long)l.Cast<object?>().ToList().FindIndex(x => Eq(x, a[0]))),
                    "count" => (Callable)((a, _) => (long)l.Cast<object?>().Count(x => Eq(x, a[0]))),
                    _ => Undefined.Instance,
                };
            default:
                return Undefined.Instance;
        }
    }

    private static object? StringMethod(string s, string name)
    {
        static string? Chars(List<object?> a) => a.Count > 0 && a[0] is string c ? c : null;
        return name switch
        {
            "strip" => (Callable)((a, _) => Chars(a) is { } c ? s.Trim(c.ToCharArray()) : s.Trim()),
            "lstrip" => (Callable)((a, _) => Chars(a) is { } c ? s.TrimStart(c.ToCharArray()) : s.TrimStart()),
            "rstrip" => (Callable)((a, _) => Chars(a) is { } c ? s.TrimEnd(c.ToCharArray()) : s.TrimEnd()),
            "upper" => (Callable)((_, _) => s.ToUpperInvariant()),
            "lower" => (Callable)((_, _) => s.ToLowerInvariant()),
            "title" => (Callable)((_, _) => Title(s)),
            "capitalize" => (Callable)((_, _) => Capitalize(s)),
            "startswith" => (Callable)((a, _) => a[0] is System.Collections.IList l ? l.Cast<object?>().Any(p => s.StartsWith(Str(p), StringComparison.Ordinal)) : s.StartsWith(Str(a[0]), StringComparison.Ordinal)),
            "endswith" => (Callable)((a, _) => a[0] is System.Collections.IList l ? l.Cast<object?>().Any(p => s.EndsWith(Str(p), StringComparison.Ordinal)) : s.EndsWith(Str(a[0]), StringComparison.Ordinal)),
            "split" => (Callable)((a, kw) =>
            {
                var sep = a.Count > 0 && a[0] is string sp ? sp : kw.TryGetValue("sep", out var ks) && ks is string kss ? kss : null;
                long max = a.Count > 1 ? ToLong(a[1]) : kw.TryGetValue("maxsplit", out var km) ? ToLong(km) : -1;
                if (sep is null)
                {
                    var parts = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    if (max >= 0 && parts.Length > max + 1)
                    {
                        var head = s.TrimStart().Split((char[]?)null, (int)max + 1, StringSplitOptions.RemoveEmptyEntries);
                        head[^1] = head[^1].TrimStart();
                        parts = head;
                    }
                    return parts.Select(p => (object?)p).ToList();
                }
                if (sep.Length == 0) throw new ChatTemplateException("chat template: split() separator is empty");
                var r = max >= 0 ? s.Split(sep, (int)max + 1) : s.Split(sep);
                return r.Select(p => (object?)p).ToList();
            }),
            "replace" => (Callable)((a, _) => Str(a[0]).Length == 0 ? s : s.Replace(Str(a[0]), Str(a[1]), StringComparison.Ordinal)),
            "find" => (Callable)((a, _) => (long)s.IndexOf(Str(a[0]), StringComparison.Ordinal)),
            "count" => (Callable)((a, _) => { var sub = Str(a[0]); if (sub.Length == 0) return (long)(s.Length + 1); long c = 0; int i = 0; while ((i = s.IndexOf(sub, i, StringComparison.Ordinal)) >= 0) { c++; i += sub.Length; } return c; }),
            "join" => (Callable)((a, _) => string.Join(s, Iterate(a[0]).Select(Str))),
            "splitlines" => (Callable)((_, _) => s.Split('\n').Select(p => (object?)p.TrimEnd('\r')).ToList()),
            "isdigit" => (Callable)((_, _) => s.Length > 0 && s.All(char.IsDigit)),
            "format" => (Callable)((a, _) => { var r = s; foreach (var x in a) { var i = r.IndexOf("{}", StringComparison.Ordinal); if (i < 0) break; r = r[..i] + Str(x) + r[(i + 2)..]; } return r; }),
            _ => Undefined.Instance,
        };
    }

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevLetter = false;
        foreach (var c in s) { sb.Append(prevLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)); prevLetter = char.IsLetter(c); }
        return sb.ToString();
    }

    private static string Strftime(DateTime t, string fmt)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < fmt.Length; i++)
        {
            if (fmt[i] != '%' || i + 1 >= fmt.Length) { sb.Append(fmt[i]); continue; }
            char c = fmt[++i];
            sb.Append(c switch
            {
                'Y' => t.ToString("yyyy", CultureInfo.InvariantCulture), 'm' => t.ToString("MM", CultureInfo.InvariantCulture),
                'd' => t.ToString("dd", CultureInfo.InvariantCulture), 'H' => t.ToString("HH", CultureInfo.InvariantCulture),
                'M' => t.ToString("mm", CultureInfo.InvariantCulture), 'S' => t.ToString("ss", CultureInfo.InvariantCulture),
                'b' => t.ToString("MMM", CultureInfo.InvariantCulture), 'B' => t.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => t.ToString("ddd", CultureInfo.InvariantCulture), 'A' => t.ToString("dddd", CultureInfo.InvariantCulture),
                'y' => t.ToString("yy", CultureInfo.InvariantCulture), '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }

    // ───────────────────────────── filters and tests ─────────────────────────────

    private static class Filters
    {
        public static object? Apply(string name, object? v, List<object?> a, Dictionary<string, object?> kw)
        {
            object? Arg(int i, string key, object? def) => i < a.Count ? a[i] : kw.TryGetValue(key, out var x) ? x : def;
            switch (name)
            {
                case "trim": return Arg(0, "chars", null) is string chars ? Str(v).Trim(chars.ToCharArray()) : Str(v).Trim();
                case "length" or "count": return v switch { string s => (long)s.Length, System.Collections.ICollection c => (long)c.Count, Namespace ns => (long)ns.Attrs.Count, _ => (long)Iterate(v).Count() };
                case "default" or "d":
                {
                    var def = Arg(0, "default_value", "");
                    var boolean = Truthy(Arg(1, "boolean", false));
                    return v is Undefined || (boolean && !Truthy(v)) ? def : v;
                }
                case "tojson": return Json.Dumps(v, Arg(0, "indent", null) is { } ind and not Undefined ? (int)ToLong(ind) : null);
                case "upper": return Str(v).ToUpperInvariant();
                case "lower": return Str(v).ToLowerInvariant();
                case "capitalize": return Capitalize(Str(v));
                case "title": return Title(Str(v));
                case "string": return Str(v);
                case "safe" or "e" or "escape" or "forceescape": return v is string ? v : Str(v);
                case "int": return v is string istr ? (long.TryParse(istr, NumberStyles.Integer, CultureInfo.InvariantCulture, out var li) ? li : 0L) : v is double idbl ? (long)idbl : ToLong(v);
                case "float": return v is string fs ? (double.TryParse(fs, NumberStyles.Float, CultureInfo.InvariantCulture, out var fd) ? fd : 0.0) : Convert.ToDouble(Normalize(v), CultureInfo.InvariantCulture);
                case "abs": return v switch { long l => Math.Abs(l), double d => Math.Abs(d), _ => throw new ChatTemplateException($"chat template: abs of {TypeName(v)}") };
                case "round": return Math.Round(Convert.ToDouble(Normalize(v), CultureInfo.InvariantCulture), (int)ToLong(Arg(0, "precision", 0L)), MidpointRounding.AwayFromZero);
                case "list": return Iterate(v).ToList();
                case "first": return Iterate(v).Cast<object?>().DefaultIfEmpty(Undefined.Instance).First();
                case "last": return Iterate(v).Cast<object?>().DefaultIfEmpty(Undefined.Instance).Last();
                case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : Iterate(v).Reverse().ToList();
                case "join":
                {
                    var sep = Str(Arg(0, "d", ""));
                    var attr = Arg(1, "attribute", null);
                    return string.Join(sep, Iterate(v).Select(x => Str(attr is string at ? GetAttr(x, at) : x)));
                }
                case "replace": return Str(v).Replace(Str(a[0]), Str(a[1]), StringComparison.Ordinal);
                case "items": return v is IDictionary<string, object?> d2 ? d2.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new ChatTemplateException("chat template: items on a non-dict");
                case "unique": { var seen = new List<object?>(); foreach (var x in Iterate(v)) if (!seen.Any(y => Eq(x, y))) seen.Add(x); return seen; }
                case "indent":
                {
                    var width = Arg(0, "width", 4L) is string ws ? ws : new string(' ', (int)ToLong(Arg(0, "width", 4L)));
                    var first = Truthy(Arg(1, "first", false));
                    var lines = Str(v).Split('\n');
                    for (int i = first ? 0 : 1; i < lines.Length; i++) if (lines[i].Length > 0) lines[i] = width + lines[i];
                    return string.Join("\n", lines);
                }
                case "map":
                {
                    if (kw.TryGetValue("attribute", out var mattr)) return Iterate(v).Select(x => GetAttr(x, Str(mattr))).ToList();
                    var fname = Str(a[0]);
                    return Iterate(v).Select(x => Apply(fname, x, a.Skip(1).ToList(), new Dictionary<string, object?>())).ToList();
                }
                case "selectattr" or "rejectattr":
                {
                    var attr = Str(a[0]);
                    bool keep = name == "selectattr";
                    return Iterate(v).Where(x =>
                    {
                        var val = GetAttr(x, attr);
                        var r = a.Count > 1 ? Tests.Apply(Str(a[1]), val, a.Skip(2).ToList()) : Truthy(val);
                        return r == keep;
                    }).ToList();
                }
                case "select" or "reject":
                {
                    bool keep = name == "select";
                    return Iterate(v).Where(x => (a.Count > 0 ? Tests.Apply(Str(a[0]), x, a.Skip(1).ToList()) : Truthy(x)) == keep).ToList();
                }
                case "dictsort": return v is IDictionary<string, object?> ds ? ds.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new ChatTemplateException("chat template: dictsort on a non-dict");
                case "sort": return Iterate(v).OrderBy(x => x, Comparer<object?>.Create(Compare)).ToList();
                case "wordcount": return (long)Str(v).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
                default: throw new ChatTemplateException($"chat template: unknown filter '{name}'");
            }
        }
    }

    private static class Tests
    {
        public static bool Apply(string name, object? v, List<object?> a) => name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "string" => v is string,
            "number" => Normalize(v) is long or double,
            "integer" => Normalize(v) is long,
            "float" => Normalize(v) is double,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "mapping" => v is IDictionary<string, object?> or Namespace,
            "iterable" => v is string or System.Collections.IEnumerable,
            "sequence" => v is string or System.Collections.IList or IDictionary<string, object?>,
            "callable" => v is Callable,
            "even" => ToLong(v) % 2 == 0,
            "odd" => ToLong(v) % 2 != 0,
            "divisibleby" => ToLong(v) % ToLong(a[0]) == 0,
            "equalto" or "eq" or "==" or "sameas" => Eq(v, a[0]),
            "ne" or "!=" => !Eq(v, a[0]),
            "in" => Contains(a[0], v),
            "lower" => v is string sl && sl == sl.ToLowerInvariant(),
            "upper" => v is string su && su == su.ToUpperInvariant(),
            "gt" or "greaterthan" => Compare(v, a[0]) > 0,
            "lt" or "lessthan" => Compare(v, a[0]) < 0,
            "ge" => Compare(v, a[0]) >= 0,
            "le" => Compare(v, a[0]) <= 0,
            _ => throw new ChatTemplateException($"chat template: unknown test '{name}'"),
        };
    }

    /// <summary>Python json.dumps(value, ensure_ascii=False[, indent]) as transformers' tojson filter uses it.</summary>
    internal static class Json
    {
        public static string Dumps(object? v, int? indent)
        {
            var sb = new StringBuilder();
            Write(sb, v, indent, 0);
            return sb.ToString();
        }

        private static void Write(StringBuilder sb, object? v, int? indent, int depth)
        {
            switch (Normalize(v))
            {
                case null or Undefined: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : PyFloat(d)); break;
                case string s: WriteString(sb, s); break;
                case Namespace ns: WriteObject(sb, ns.Attrs, indent, depth); break;
                case IDictionary<string, object?> dict: WriteObject(sb, dict, indent, depth); break;
                case System.Collections.IEnumerable e:
                {
                    var items = e.Cast<object?>().ToList();
                    if (items.Count == 0) { sb.Append("[]"); break; }
                    sb.Append('[');
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(indent is null ? ", " : ",");
                        NewLine(sb, indent, depth + 1);
                        Write(sb, items[i], indent, depth + 1);
                    }
                    NewLine(sb, indent, depth);
                    sb.Append(']');
                    break;
                }
                default: WriteString(sb, Str(v)); break;
            }
        }

        private static void WriteObject(StringBuilder sb, IEnumerable<KeyValuePair<string, object?>> d, int? indent, int depth)
        {
            var items = d.ToList();
            if (items.Count == 0) { sb.Append("{}"); return; }
            sb.Append('{');
            for (int i = 0; i < items.Count; i++)
            {
                if (i > 0) sb.Append(indent is null ? ", " : ",");
                NewLine(sb, indent, depth + 1);
                WriteString(sb, items[i].Key);
                sb.Append(": ");
                Write(sb, items[i].Value, indent, depth + 1);
            }
            NewLine(sb, indent, depth);
            sb.Append('}');
        }

        private static void NewLine(StringBuilder sb, int? indent, int depth)
        {
            if (indent is null) return;
            sb.Append('\n').Append(' ', indent.Value * depth);
        }

        private static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }
}
