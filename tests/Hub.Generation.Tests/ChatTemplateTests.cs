using System.Text.Json;
using Hub.Generation.Chat;

namespace Hub.Generation.Tests;

/// <summary>
/// The real chat templates, as the JSON string values of each repo's tokenizer_config.json "chat_template", rendered for a
/// multi-turn conversation with a system prompt and compared with the string transformers' apply_chat_template produces
/// (worked out by hand from the template, with transformers' trim_blocks/lstrip_blocks, and cross-checked against the
/// examples in llama.cpp's and swift-transformers' template tests).
/// </summary>
public class ChatTemplateTests
{
    private const string Llama2Json = """
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
        """;

    private const string Qwen2Json = """
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        """;

    private const string ChatGlm3Json = """
        "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n {{ message['content'] }}{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
        """;

    private const string MistralJson = """
        "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"
        """;

    private const string ZephyrJson = """
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
        """;

    private static string T(string json) => JsonSerializer.Deserialize<string>(json)!;

    private static Dictionary<string, object?> Vars(bool system, string bos, string eos, bool addGenerationPrompt = true, params (string Role, string Content)[] extra)
    {
        var msgs = new List<object?>();
        void Add(string r, string c) => msgs.Add(new Dictionary<string, object?> { ["role"] = r, ["content"] = c });
        if (system) Add("system", "You are a pirate.");
        Add("user", "Hello!");
        Add("assistant", "Hi there.");
        Add("user", "How are you? ");
        foreach (var (r, c) in extra) Add(r, c);
        return new() { ["messages"] = msgs, ["bos_token"] = bos, ["eos_token"] = eos, ["add_generation_prompt"] = addGenerationPrompt };
    }

    [Fact]
    public void Llama2_chat_template_renders_the_known_string()
    {
        var t = JinjaTemplate.Parse(T(Llama2Json));
        Assert.Equal("<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello! [/INST] Hi there. </s><s>[INST] How are you? [/INST]",
            t.Render(Vars(true, "<s>", "</s>")));
        Assert.Equal("<s>[INST] Hello! [/INST] Hi there. </s><s>[INST] How are you? [/INST]", t.Render(Vars(false, "<s>", "</s>")));
    }

    [Fact]
    public void Llama2_template_raises_on_roles_that_do_not_alternate()
    {
        var t = JinjaTemplate.Parse(T(Llama2Json));
        var ex = Assert.Throws<ChatTemplateException>(() => t.Render(Vars(true, "<s>", "</s>", true, ("user", "again"))));
        Assert.Contains("Conversation roles must alternate", ex.Message);
    }

    [Fact]
    public void Qwen2_chat_template_renders_the_known_string()
    {
        var t = JinjaTemplate.Parse(T(Qwen2Json));
        Assert.Equal("<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nHow are you? <|im_end|>\n<|im_start|>assistant\n",
            t.Render(Vars(true, "", "<|im_end|>")));
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nHow are you? <|im_end|>\n",
            t.Render(Vars(false, "", "<|im_end|>", addGenerationPrompt: false)));
    }

    [Fact]
    public void ChatGlm3_chat_template_renders_the_known_string()
    {
        var t = JinjaTemplate.Parse(T(ChatGlm3Json));
        Assert.Equal("[gMASK]sop<|system|>\n You are a pirate.<|user|>\n Hello!<|assistant|>\n Hi there.<|user|>\n How are you? <|assistant|>",
            t.Render(Vars(true, "", "</s>")));
    }

    [Fact]
    public void Mistral_chat_template_renders_the_known_string()
    {
        var t = JinjaTemplate.Parse(T(MistralJson));
        Assert.Equal("<s> [INST] You are a pirate.\n\nHello! [/INST] Hi there.</s> [INST] How are you?  [/INST]", t.Render(Vars(true, "<s>", "</s>")));
        Assert.Equal("<s> [INST] Hello! [/INST] Hi there.</s> [INST] How are you?  [/INST]", t.Render(Vars(false, "<s>", "</s>")));
        var ex = Assert.Throws<ChatTemplateException>(() => t.Render(Vars(true, "<s>", "</s>", true, ("tool", "x"))));
        Assert.Contains("Only user and assistant roles are supported", ex.Message);
    }

    [Fact]
    public void Zephyr_chat_template_renders_the_known_string()
    {
        var t = JinjaTemplate.Parse(T(ZephyrJson));
        Assert.Equal("<|system|>\nYou are a pirate.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there.</s>\n<|user|>\nHow are you? </s>\n<|assistant|>\n",
            t.Render(Vars(true, "<s>", "</s>")));
        Assert.Equal("<|system|>\nYou are a pirate.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there.</s>\n<|user|>\nHow are you? </s>\n",
            t.Render(Vars(true, "<s>", "</s>", addGenerationPrompt: false)));
    }

    private const string Llama3Json = """
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        """;

    [Fact]
    public void Llama3_chat_template_filter_binds_tighter_than_plus()
    {
        var t = JinjaTemplate.Parse(T(Llama3Json));
        Assert.Equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a pirate.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            t.Render(Vars(true, "<|begin_of_text|>", "<|eot_id|>")));
    }

    private static string R(string template, Dictionary<string, object?>? vars = null) => JinjaTemplate.Parse(template).Render(vars ?? new());

    [Fact]
    public void Whitespace_control_trim_blocks_and_lstrip_blocks_follow_transformers_environment()
    {
        Assert.Equal("ab", R("a\n  {%- if true %}\nb{% endif %}"));
        Assert.Equal("x\ny\nz", R("x\n    {% if true %}\ny\n    {% endif %}\nz"));
        Assert.Equal("ab", R("a  {%- if true -%}  \n  b{%- endif %}"));
        Assert.Equal("x\ny\n", R("{% for i in [1] %}\n    {% if true %}\nx\n    {% endif %}\ny\n{% endfor %}")); // block lines vanish
        Assert.Equal("  1", R("{% set a = 1 %}  {{ a }}")); // lstrip only applies before block tags
        Assert.Equal("ab", R("a{# comment #}\nb"));
        Assert.Equal("a\n  b", R("a\n  {{ 'b' }}"));
        Assert.Equal(" x", R("{%+ if true %} x{% endif %}"));
    }

    [Fact]
    public void Expressions_filters_tests_and_methods_work_like_jinja()
    {
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = new List<object?>
            {
                new Dictionary<string, object?> { ["role"] = "system", ["content"] = "  sys  " },
                new Dictionary<string, object?> { ["role"] = "user", ["content"] = "a,b,c" },
            },
            ["n"] = 3L,
        };
        Assert.Equal("sys|SYS|2|a-b-c", R("{{ messages[0].content|trim }}|{{ messages[0]['content'].strip().upper() }}|{{ messages|length }}|{{ messages[1].content.split(',')|join('-') }}", vars));
        Assert.Equal("user", R("{% for m in messages[1:] %}{{ m.role }}{% endfor %}", vars));
        Assert.Equal("1:first 2:last ", R("{% for m in messages %}{{ loop.index }}:{% if loop.first %}first{% elif loop.last %}last{% endif %} {% endfor %}", vars));
        Assert.Equal("3", R("{% set ns = namespace(count=0) %}{% for i in range(n) %}{% set ns.count = ns.count + 1 %}{% endfor %}{{ ns.count }}", vars));
        Assert.Equal("", R("{% for i in range(n) %}{% set x = i %}{% endfor %}{{ x }}", vars)); // loop scope does not leak
        Assert.Equal("yes no", R("{{ 'yes' if 'b' in messages[1].content else 'no' }} {{ 'yes' if 'z' in 'abc' else 'no' }}", vars));
        Assert.Equal("True False True", R("{{ n is defined }} {{ missing is defined }} {{ not missing }}", vars));
        Assert.Equal("fallback", R("{{ missing|default('fallback') }}"));
        Assert.Equal("a1b", R("{{ 'a' ~ 1 ~ 'b' }}"));
        Assert.Equal("cba", R("{{ 'abc'[::-1] }}"));
        Assert.Equal("True True", R("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }}"));
        Assert.Equal("{\"a\": [1, 2.5, true, null], \"b\": \"x\\ny\\\"中\"}", R("{{ {'a': [1, 2.5, true, none], 'b': 'x\\ny\"中'}|tojson }}"));
        Assert.Equal("{\n  \"a\": 1\n}", R("{{ {'a': 1}|tojson(indent=2) }}"));
        Assert.Equal("7 2 1 2.5", R("{{ 1 + 2 * 3 }} {{ 7 // 3 }} {{ 7 % 3 }} {{ 5 / 2 }}"));
        Assert.Equal("ok", R("{% if n > 2 and not (n == 4 or n < 0) %}ok{% endif %}", vars));
        Assert.Equal("hi", R("{% macro greet(x='hi') %}{{ x }}{% endmacro %}{{ greet() }}"));
        Assert.Equal("ac", R("{% for c in 'abc' %}{% if c == 'b' %}{% continue %}{% endif %}{{ c }}{% endfor %}"));
        Assert.Equal("a", R("{% for c in 'abc' %}{% if c == 'b' %}{% break %}{% endif %}{{ c }}{% endfor %}"));
        Assert.Equal("k=v;", R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", new() { ["d"] = new Dictionary<string, object?> { ["k"] = "v" } }));
        Assert.Equal("user", R("{{ (messages|selectattr('role', 'equalto', 'user')|list)[0].role }}", vars));
        Assert.Equal("empty", R("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"));
    }

    [Fact]
    public void Syntax_errors_name_the_problem()
    {
        Assert.Contains("endif", Assert.Throws<ChatTemplateException>(() => JinjaTemplate.Parse("{% if x %}abc")).Message);
        Assert.Contains("unclosed", Assert.Throws<ChatTemplateException>(() => JinjaTemplate.Parse("{{ x ")).Message);
        Assert.Contains("unknown filter", Assert.Throws<ChatTemplateException>(() => R("{{ 1|frobnicate }}")).Message);
    }
}
