/* Quantize one weight with the quark backend and print its integers: the
 * C example quantize-tensor.c, in Vala (the output is the same).
 *   valac --pkg quark-1.0 quantize-tensor.vala */
int main () {
    float[] w = { 1.27f, -1.27f, 0.5f, 0.3f, 0.004f, 0.125f, -0.05f, 0.635f };
    int64[] shape = { 2, 4 };
    var registry = Quark.Registry.get_default ();
    try {
        var config = registry.config_from_string (
            "{\"backend\": \"quark\", \"global_quant_config\":"
            + " {\"weight\": {\"dtype\": \"int8\", \"qscheme\": \"per_channel\"}}}", -1);
        var model = new Quark.Model ();
        model.add_tensor (new Quark.Tensor.from_floats ("fc.weight", shape, w));
        var out = registry.new_quantizer (config).quantize_model (model, null, null);
        unowned uint8[] codes = out.get_tensor ("fc.weight").get_data ().get_data ();
        unowned uint8[] scale_bytes = out.get_tensor ("fc.weight_scale").get_data ().get_data ();
        for (int row = 0; row < 2; row++) {
            float scale = 0;
            Memory.copy (&scale, &scale_bytes[4 * row], 4);
            print ("row %d: scale %.9g, codes %d %d %d %d\n", row, scale, (int8) codes[4 * row],
                   (int8) codes[4 * row + 1], (int8) codes[4 * row + 2], (int8) codes[4 * row + 3]);
        }
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
