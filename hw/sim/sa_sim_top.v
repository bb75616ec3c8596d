// sa_sim_top — simulation wrapper (Verilator only): sa_core plus behavioural memories with
// combinational reads, and a load port through which the C++ harness fills them before `start`
// and reads the accumulators back after `done` (those cycles are not counted).
//   ld_sel 0: descriptor {ch, wbits, ebase, ecount} of datapath ld_pe at ld_addr
//          1: accumulator start value of that descriptor
//          2: weight-list entry {k, w} of datapath ld_pe
//          3: activation byte at ld_addr (im2col: row k, position p -> k * npos + p)
//          4: number of descriptors of datapath ld_pe
// rd_addr reads the output memory (channel c, position p -> c * npos + p) on rd_data.
module sa_sim_top #(
    parameter integer NDP = 8,
    parameter integer DPW = 32,
    parameter integer GUARD = 0,
    parameter integer WMAX = 8,
    parameter integer AMAX = 8,
    parameter integer CSD_EN = 1,
    parameter integer KW = 12,
    parameter integer PW = 12,
    parameter integer CW = 8,
    parameter integer DW = 6,
    parameter integer EW = 13,
    parameter integer ADEPTH = 131072,
    parameter integer ODEPTH = 16384
) (
    input wire clk,
    input wire rst,
    input wire start,
    input wire mode_csd,
    input wire [3:0] abits,
    input wire [PW:0] npos,
    input wire ld_we,
    input wire [2:0] ld_sel,
    input wire [7:0] ld_pe,
    input wire [31:0] ld_addr,
    input wire [63:0] ld_data,
    input wire [31:0] rd_addr,
    output wire [31:0] rd_data,
    output wire done,
    output wire [47:0] cycles,
    output wire [63:0] activity  // summed over the datapaths (0 without SQ_ACTIVITY)
);
  localparam integer LMAX = DPW / (2 + 1 + GUARD);
  localparam integer DDW = CW + 4 + EW + EW + 1;
  localparam integer EDW = KW + WMAX;

  reg [DDW-1:0] dmem[0:NDP*(1<<DW)-1];
  reg [31:0] imem[0:NDP*(1<<DW)-1];
  reg [EDW-1:0] wmem[0:NDP*(1<<EW)-1];
  reg [7:0] amem[0:ADEPTH-1];
  reg [31:0] omem[0:ODEPTH-1];
  reg [DW:0] nd[0:NDP-1];

  wire [NDP*(DW+1)-1:0] ndesc;
  wire [NDP*DW-1:0] desc_addr;
  reg [NDP*DDW-1:0] desc_data;
  reg [NDP*32-1:0] desc_init;
  wire [NDP*EW-1:0] ent_addr;
  reg [NDP*EDW-1:0] ent_data;
  wire [NDP*KW-1:0] act_k;
  wire [NDP*PW-1:0] act_p0;
  reg [NDP*LMAX*AMAX-1:0] act_data;
  wire [NDP-1:0] out_we;
  wire [NDP*CW-1:0] out_ch;
  wire [NDP*PW-1:0] out_p0;
  wire [NDP*(PW+1)-1:0] out_count;
  wire [NDP*LMAX*32-1:0] out_data;

  integer i, j, a;
  always @* begin
    for (i = 0; i < NDP; i = i + 1) begin
      desc_data[i*DDW+:DDW] = dmem[i*(1<<DW)+desc_addr[i*DW+:DW]];
      desc_init[i*32+:32] = imem[i*(1<<DW)+desc_addr[i*DW+:DW]];
      ent_data[i*EDW+:EDW] = wmem[i*(1<<EW)+ent_addr[i*EW+:EW]];
      for (j = 0; j < LMAX; j = j + 1) begin
        a = act_k[i*KW+:KW] * npos + act_p0[i*PW+:PW] + j;
        act_data[(i*LMAX+j)*AMAX+:AMAX] =
            (act_p0[i*PW+:PW] + j < npos && a < ADEPTH) ? amem[a][AMAX-1:0] : {AMAX{1'b0}};
      end
    end
  end
  genvar g;
  generate
    for (g = 0; g < NDP; g = g + 1) begin : nds
      assign ndesc[g*(DW+1)+:DW+1] = nd[g];
    end
  endgenerate

  always @(posedge clk) begin
    if (ld_we) begin
      case (ld_sel)
        3'd0: dmem[ld_pe*(1<<DW)+ld_addr] <= ld_data[DDW-1:0];
        3'd1: imem[ld_pe*(1<<DW)+ld_addr] <= ld_data[31:0];
        3'd2: wmem[ld_pe*(1<<EW)+ld_addr] <= ld_data[EDW-1:0];
        3'd3: amem[ld_addr] <= ld_data[7:0];
        3'd4: nd[ld_pe] <= ld_data[DW:0];
        default: ;
      endcase
    end
    for (i = 0; i < NDP; i = i + 1)
      if (out_we[i])
        for (j = 0; j < LMAX; j = j + 1)
          if (j < out_count[i*(PW+1)+:PW+1])
            omem[out_ch[i*CW+:CW]*npos+out_p0[i*PW+:PW]+j] <= out_data[(i*LMAX+j)*32+:32];
  end
  assign rd_data = omem[rd_addr];

  wire [NDP*64-1:0] act_per_dp;
  sa_core #(
      .NDP(NDP), .DPW(DPW), .GUARD(GUARD), .WMAX(WMAX), .AMAX(AMAX), .CSD_EN(CSD_EN), .KW(KW),
      .PW(PW), .CW(CW), .DW(DW), .EW(EW), .LMAX(LMAX)
  ) core (
      .clk(clk), .rst(rst), .start(start), .mode_csd(mode_csd), .abits(abits), .npos(npos),
      .ndesc(ndesc), .desc_addr(desc_addr), .desc_data(desc_data), .desc_init(desc_init),
      .ent_addr(ent_addr), .ent_data(ent_data), .act_k(act_k), .act_p0(act_p0),
      .act_data(act_data), .out_we(out_we), .out_ch(out_ch), .out_p0(out_p0),
      .out_count(out_count), .out_data(out_data), .done(done), .cycles(cycles)
`ifdef SQ_ACTIVITY
      , .activity(act_per_dp)
`endif
  );
`ifndef SQ_ACTIVITY
  assign act_per_dp = {NDP * 64{1'b0}};
`endif
  reg [63:0] act_sum;
  always @* begin
    act_sum = 64'd0;
    for (i = 0; i < NDP; i = i + 1) act_sum = act_sum + act_per_dp[i*64+:64];
  end
  assign activity = act_sum;
endmodule
